"""The `reviewapp` commands (Typer). Exit codes CI can read: 0 passed, 1 a gate failed (a
`--fail-if` held, or a metric regressed), 2 bad input (a run file, a dataset, a token the server
refused), 3 the server could not be reached or failed, 4 the run ended without completing."""

import re
from pathlib import Path
from typing import Annotated

import typer
import yaml

from reviewapp_cli import gates, show
from reviewapp_cli.client import ApiError, Client
from reviewapp_cli.yaml_lines import field_errors, line_of

EXIT_GATE, EXIT_INPUT, EXIT_SERVER, EXIT_INCOMPLETE = 1, 2, 3, 4
# A run file's `data` with one of these endings is a file beside it, uploaded as a dataset
# version named after the file; anything else is a dataset's name@version.
DATA_FILE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv")

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
run_app = typer.Typer(help="Batch and evaluation runs.", no_args_is_help=True)
dataset_app = typer.Typer(help="Datasets: versioned rows for runs.", no_args_is_help=True)
app.add_typer(run_app, name="run")
app.add_typer(dataset_app, name="dataset")

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


def _client(url: str | None, token: str | None) -> Client:
    try:
        return Client(url, token)
    except ApiError as exc:
        _fail(str(exc), EXIT_INPUT)


def _fail(message: str, code: int):
    show.errors.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _api_failed(exc: ApiError, *, file: Path | None = None, text: str = ""):
    """Print the server's refusal, each field error with its line in `file`, and exit."""
    if exc.status == 0 or exc.status >= 500:
        _fail(str(exc), EXIT_SERVER)
    problems = field_errors(exc.body)
    if not problems:
        _fail(str(exc), EXIT_INPUT)
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


@dataset_app.command("upload")
def dataset_upload(
    name: str,
    file: Path,
    skip_bad_rows: Annotated[bool, typer.Option(help="Save the good rows, list the bad.")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Upload FILE (JSON lines or CSV) as NAME's next version."""
    client = _client(url, token)
    made = _upload(client, name, file, skip_bad_rows)
    show.console.print(f"{file} → {made['name']}@{made['version']} ({made['rows']} rows)")


def _upload(client: Client, name: str, file: Path, skip_bad_rows: bool) -> dict:
    if not file.is_file():
        _fail(f"{file}: no such file", EXIT_INPUT)
    try:
        made = client.upload(f"/datasets/{name}/versions/", file,
                             skip_bad_rows="true" if skip_bad_rows else "")  # fmt: skip
    except ApiError as exc:
        if isinstance(exc.body, dict) and exc.body.get("problems"):
            show.errors.print(f"[red]error:[/red] {file}: {exc}", highlight=False)
            for problem in exc.body["problems"]:
                show.errors.print(f"  {file}:{problem['line']}: {problem['error']}",
                                  highlight=False)  # fmt: skip
            raise typer.Exit(EXIT_INPUT) from None
        _api_failed(exc)
    for problem in made.get("skipped", []):
        show.errors.print(f"skipped {file}:{problem['line']}: {problem['error']}",
                          highlight=False)  # fmt: skip
    return made


def _dataset_name(file: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", file.stem).lstrip("-._") or "data"


@run_app.command("create")
def run_create(
    file: Annotated[Path, typer.Option("--file", "-f", help="The run file (run.yml).")],
    name: Annotated[str | None, typer.Option(help="The run's name (else the file's).")] = None,
    stream: Annotated[bool, typer.Option(help="Follow its progress until it ends.")] = False,
    skip_bad_rows: Annotated[bool, typer.Option(help="Upload a data file's good rows.")] = False,
    fail_if: FailIf = None,
    fail_if_regression_from: Regression = None,
    tolerance: Tolerance = 0.0,
    url: Url = None,
    token: Token = None,
) -> None:
    """Create a run from a run file; with a gate, wait for it and exit 1 if the gate fails."""
    checked_gates = _gates(fail_if)
    client = _client(url, token)
    try:
        text = file.read_text()
        spec = yaml.safe_load(text)
    except OSError as exc:
        _fail(f"{file}: {exc.strerror}", EXIT_INPUT)
    except yaml.YAMLError as exc:
        _fail(f"{file}: not YAML: {exc}", EXIT_INPUT)
    if not isinstance(spec, dict):
        _fail(f"{file}: a run file is a mapping (deployment:, data:, column_mapping: ...)",
              EXIT_INPUT)  # fmt: skip
    if name:
        spec["name"] = name
    data = spec.get("data")
    if isinstance(data, str) and data.lower().endswith(DATA_FILE_SUFFIXES):
        if not (file.parent / data).is_file():
            _fail(f"{file}:{line_of(text, 'data')}: data: no file {data} (beside {file})",
                  EXIT_INPUT)  # fmt: skip
        made = _upload(client, _dataset_name(Path(data)), file.parent / data, skip_bad_rows)
        spec["data"] = f"{made['name']}@{made['version']}"
        show.console.print(f"{data} → {spec['data']} ({made['rows']} rows)")
    try:
        run = client.post("/runs/", json=spec)
    except ApiError as exc:
        _api_failed(exc, file=file, text=text)
    show.console.print(f"Run {run['name']} started: {run['rows']['total']} rows.")
    if stream or checked_gates or fail_if_regression_from:
        _finish(client, run["name"], checked_gates, fail_if_regression_from, tolerance)


def _gates(texts: list[str] | None) -> list[gates.Gate]:
    try:
        return [gates.parse_gate(text) for text in texts or []]
    except gates.BadGate as exc:
        _fail(str(exc), EXIT_INPUT)


def _finish(client, name, checked_gates, regression_base, tolerance) -> None:
    """Follow the run to its end, then apply the gates."""
    try:
        run = show.follow(lambda n: client.get(f"/runs/{n}/"), name)
    except ApiError as exc:
        _api_failed(exc)
    if run["status"] != "completed":
        _fail(f"run {name} ended {run['status']}", EXIT_INCOMPLETE)
    metrics = {metric["name"]: metric["value"] for metric in run["metrics"]}
    failures = []
    try:
        failures = [why for gate in checked_gates if (why := gate.failed_by(metrics))]
    except gates.BadGate as exc:
        _fail(str(exc), EXIT_INPUT)
    show.console.print(show.metrics_table(run))
    if regression_base:
        try:
            compared = client.get(f"/runs/{regression_base}/compare/{name}/",
                                  tolerance=tolerance)  # fmt: skip
        except ApiError as exc:
            _api_failed(exc)
        show.console.print(show.compare_tables(compared)[0])
        failures += [
            f"{m['name']} regressed from {m['base']:g} to {m['value']:g} (base {regression_base})"
            for m in compared["metrics"]
            if m["regressed"]
        ]
    for why in failures:
        show.errors.print(f"[red]FAILED:[/red] {why}", highlight=False)
    if failures:
        raise typer.Exit(EXIT_GATE)
    show.console.print("All gates passed." if checked_gates or regression_base else "")


@run_app.command("stream")
def run_stream(
    name: str,
    fail_if: FailIf = None,
    fail_if_regression_from: Regression = None,
    tolerance: Tolerance = 0.0,
    url: Url = None,
    token: Token = None,
) -> None:
    """Follow a run until it ends: rows done, errors, ETA; then its metrics and gates."""
    checked_gates = _gates(fail_if)
    _finish(_client(url, token), name, checked_gates, fail_if_regression_from, tolerance)


@run_app.command("show-metrics")
def run_show_metrics(name: str, json: Json = False, url: Url = None, token: Token = None) -> None:
    """A run's metrics (means of its evaluators, or a batch's error rate and latency)."""
    run = _get(_client(url, token), f"/runs/{name}/")
    if json:
        show.as_json(run)
    else:
        show.console.print(show.metrics_table(run))


@run_app.command("show-details")
def run_show_details(
    name: str,
    json: Json = False,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 1000,
    url: Url = None,
    token: Token = None,
) -> None:
    """A run's rows: inputs, answer, each evaluator's score, error, request id."""
    client = _client(url, token)
    run = _get(client, f"/runs/{name}/")
    rows, after = [], 0
    while after is not None and len(rows) < limit:
        page = _get(client, f"/runs/{name}/rows/", after=after)
        rows += page["rows"]
        after = page["next_after"]
    rows = rows[:limit]
    if json:
        show.as_json(rows)
    else:
        show.console.print(show.rows_table(rows, run["evaluators"]))


@run_app.command("list")
def run_list(json: Json = False, url: Url = None, token: Token = None) -> None:
    """Runs, newest first."""
    runs = _get(_client(url, token), "/runs/")
    if json:
        show.as_json(runs)
    else:
        show.console.print(show.runs_table(runs))


@run_app.command("compare")
def run_compare(
    base: str,
    other: str,
    json: Json = False,
    tolerance: Tolerance = 0.0,
    url: Url = None,
    token: Token = None,
) -> None:
    """OTHER against BASE: metric deltas, and the rows whose answers or scores differ."""
    compared = _get(_client(url, token), f"/runs/{base}/compare/{other}/", tolerance=tolerance)
    if json:
        show.as_json(compared)
        return
    for table in show.compare_tables(compared):
        show.console.print(table)


@run_app.command("cancel")
def run_cancel(name: str, url: Url = None, token: Token = None) -> None:
    """Stop sending a run's rows (those in flight finish)."""
    run = _post(_client(url, token), f"/runs/{name}/cancel/")
    show.console.print(f"{name}: {run['status']}")


@run_app.command("resume")
def run_resume(
    name: str,
    stream: Annotated[bool, typer.Option(help="Follow it until it ends.")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Send only the rows of a run not answered yet."""
    client = _client(url, token)
    run = _post(client, f"/runs/{name}/resume/")
    show.console.print(f"{name}: {run['resumed_rows']} row(s) to send.")
    if stream and run["resumed_rows"]:
        _finish(client, name, [], None, 0.0)


def _get(client: Client, path: str, **params):
    try:
        return client.get(path, **params)
    except ApiError as exc:
        _api_failed(exc)


def _post(client: Client, path: str):
    try:
        return client.post(path)
    except ApiError as exc:
        _api_failed(exc)


def main() -> None:
    app()
