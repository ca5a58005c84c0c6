"""What every `reviewapp` command shares: exit codes, the server's options, and how a refusal
is printed (each field error with its line in the file that was sent)."""

from pathlib import Path
from typing import Annotated

import typer
import yaml

from reviewapp_cli import show
from reviewapp_cli.client import ApiError, Client
from reviewapp_cli.yaml_lines import field_errors, line_of

EXIT_GATE, EXIT_INPUT, EXIT_SERVER, EXIT_INCOMPLETE = 1, 2, 3, 4
# A run file's `data` with one of these endings is a file beside it, uploaded as a dataset
# version named after the file; anything else is a dataset's name@version.
DATA_FILE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv")

Url = Annotated[str | None, typer.Option("--url", envvar="REVIEWAPP_URL", help="The server.")]
Token = Annotated[
    str | None, typer.Option("--token", envvar="REVIEWAPP_TOKEN", help="An API token.")
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
FailIf = Annotated[
    list[str] | None,
    typer.Option("--fail-if", help='Exit 1 when this holds, e.g. "exact_match < 0.8".'),
]
Regression = Annotated[
    str | None,
    typer.Option("--fail-if-regression-from", help="Exit 1 when a metric is worse than BASE's."),
]
Tolerance = Annotated[
    float, typer.Option("--tolerance", help="Worsening allowed, as a share of BASE's value.")
]


def client_for(url: str | None, token: str | None) -> Client:
    try:
        return Client(url, token)
    except ApiError as exc:
        fail(str(exc), EXIT_INPUT)


def fail(message: str, code: int):
    show.errors.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def api_failed(exc: ApiError, *, file: Path | None = None, text: str = ""):
    """Print the server's refusal, each field error with its line in `file`, and exit."""
    if exc.status == 0 or exc.status >= 500:
        fail(str(exc), EXIT_SERVER)
    problems = field_errors(exc.body)
    if not problems:
        fail(str(exc), EXIT_INPUT)
    for field, message in problems:
        where = ""
        if file is not None:
            line = line_of(text, field) if field else None
            where = f"{file}:{line}: " if line else f"{file}: "
        show.errors.print(f"[red]error:[/red] {where}{field + ': ' if field else ''}{message}",
                          highlight=False)  # fmt: skip
    if isinstance(exc.body, dict) and isinstance(exc.body.get("problems"), list):
        for problem in exc.body["problems"]:
            show.errors.print(f"  line {problem['line']}: {problem['error']}", highlight=False)
    raise typer.Exit(EXIT_INPUT)


def read_yaml(file: Path) -> tuple[str, object]:
    """The file's text (for error lines) and its YAML; exits 2 when it cannot be read."""
    try:
        text = file.read_text()
        return text, yaml.safe_load(text)
    except OSError as exc:
        fail(f"{file}: {exc.strerror}", EXIT_INPUT)
    except yaml.YAMLError as exc:
        fail(f"{file}: not YAML: {exc}", EXIT_INPUT)
