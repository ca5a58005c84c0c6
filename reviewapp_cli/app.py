"""The `reviewapp` commands (Typer). Exit codes CI can read: 0 passed, 1 a gate failed (a
`--fail-if` held, or a metric regressed), 2 bad input (a run file, a dataset, a token the server
refused), 3 the server could not be reached or failed, 4 the run ended without completing."""

import re
from pathlib import Path
from typing import Annotated

import typer

from reviewapp_cli import gates, manifest_commands, show
from reviewapp_cli.client import ApiError, Client
from reviewapp_cli.common import (
    DATA_FILE_SUFFIXES,
    EXIT_GATE,
    EXIT_INCOMPLETE,
    EXIT_INPUT,
    FailIf,
    Json,
    Regression,
    Token,
    Tolerance,
    Url,
    api_failed,
    client_for,
    fail,
    read_yaml,
)
from reviewapp_cli.yaml_lines import line_of

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
run_app = typer.Typer(help="Batch and evaluation runs.", no_args_is_help=True)
dataset_app = typer.Typer(help="Datasets: versioned rows for runs.", no_args_is_help=True)
app.add_typer(run_app, name="run")
app.command("apply")(manifest_commands.apply)
app.command("export")(manifest_commands.export)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("upload")
def dataset_upload(
    name: str,
    file: Path,
    skip_bad_rows: Annotated[bool, typer.Option(help="Save the good rows, list the bad.")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Upload FILE (JSON lines or CSV) as NAME's next version."""
    client = client_for(url, token)
    made = _upload(client, name, file, skip_bad_rows)
    show.console.print(f"{file} → {made['name']}@{made['version']} ({made['rows']} rows)")


@dataset_app.command("from-session")
def dataset_from_session(name: str, session: int, url: Url = None, token: Token = None) -> None:
    """Save review session SESSION's agreed expectations as NAME's next version (admins)."""
    client = client_for(url, token)
    try:
        made = client.post(f"/datasets/{name}/versions/from-session/", json={"session": session})
    except ApiError as exc:
        api_failed(exc)
    version = f"{made['name']}@{made['version']}"
    show.console.print(f"Session {session} → {version} ({made['rows']} rows)")


def _upload(client: Client, name: str, file: Path, skip_bad_rows: bool) -> dict:
    if not file.is_file():
        fail(f"{file}: no such file", EXIT_INPUT)
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
        api_failed(exc)
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
    base: Annotated[
        str | None, typer.Option(help="An evaluation's base run (else the file's `run`).")
    ] = None,
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
    client = client_for(url, token)
    text, spec = read_yaml(file)
    if not isinstance(spec, dict):
        fail(f"{file}: a run file is a mapping (deployment:, data:, column_mapping: ...)",
              EXIT_INPUT)  # fmt: skip
    if name:
        spec["name"] = name
    if base:
        spec["run"] = base
    data = spec.get("data")
    if isinstance(data, str) and data.lower().endswith(DATA_FILE_SUFFIXES):
        if not (file.parent / data).is_file():
            fail(f"{file}:{line_of(text, 'data')}: data: no file {data} (beside {file})",
                  EXIT_INPUT)  # fmt: skip
        made = _upload(client, _dataset_name(Path(data)), file.parent / data, skip_bad_rows)
        spec["data"] = f"{made['name']}@{made['version']}"
        show.console.print(f"{data} → {spec['data']} ({made['rows']} rows)")
    try:
        run = client.post("/runs/", json=spec)
    except ApiError as exc:
        api_failed(exc, file=file, text=text)
    show.console.print(f"Run {run['name']} started: {run['rows']['total']} rows.")
    if stream or checked_gates or fail_if_regression_from:
        _finish(client, run["name"], checked_gates, fail_if_regression_from, tolerance)


def _gates(texts: list[str] | None) -> list[gates.Gate]:
    try:
        return [gates.parse_gate(text) for text in texts or []]
    except gates.BadGate as exc:
        fail(str(exc), EXIT_INPUT)


def _finish(client, name, checked_gates, regression_base, tolerance) -> None:
    """Follow the run to its end, then apply the gates."""
    try:
        run = show.follow(lambda n: client.get(f"/runs/{n}/"), name)
    except ApiError as exc:
        api_failed(exc)
    if run["status"] != "completed":
        fail(f"run {name} ended {run['status']}", EXIT_INCOMPLETE)
    metrics = {metric["name"]: metric["value"] for metric in run["metrics"]}
    failures = []
    try:
        failures = [why for gate in checked_gates if (why := gate.failed_by(metrics))]
    except gates.BadGate as exc:
        fail(str(exc), EXIT_INPUT)
    show.console.print(show.metrics_table(run))
    if regression_base:
        try:
            compared = client.get(f"/runs/{regression_base}/compare/{name}/",
                                  tolerance=tolerance)  # fmt: skip
        except ApiError as exc:
            api_failed(exc)
        show.console.print(show.compare_tables(compared)[0])
        failures += [
            f"{m['name']} regressed from {m['base']:g} to "
            f"{'no value' if m['value'] is None else format(m['value'], 'g')} "
            f"(base {regression_base})"
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
    _finish(client_for(url, token), name, checked_gates, fail_if_regression_from, tolerance)


@run_app.command("show-metrics")
def run_show_metrics(name: str, json: Json = False, url: Url = None, token: Token = None) -> None:
    """A run's metrics (means of its evaluators, or a batch's error rate and latency)."""
    run = _get(client_for(url, token), f"/runs/{name}/")
    show.table_or_json(run, json, show.metrics_table)


@run_app.command("show-details")
def run_show_details(
    name: str,
    json: Json = False,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 1000,
    url: Url = None,
    token: Token = None,
) -> None:
    """A run's rows: inputs, answer, each evaluator's score, error, request id."""
    client = client_for(url, token)
    run = _get(client, f"/runs/{name}/")
    rows, after = [], 0
    while after is not None and len(rows) < limit:
        page = _get(client, f"/runs/{name}/rows/", after=after)
        rows += page["rows"]
        after = page["next_after"]
    show.table_or_json(rows[:limit], json, lambda r: show.rows_table(r, run["evaluators"]))


@run_app.command("list")
def run_list(json: Json = False, url: Url = None, token: Token = None) -> None:
    """Runs, newest first."""
    show.table_or_json(_get(client_for(url, token), "/runs/"), json, show.runs_table)


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
    compared = _get(client_for(url, token), f"/runs/{base}/compare/{other}/", tolerance=tolerance)
    if json:
        show.as_json(compared)
        return
    for table in show.compare_tables(compared):
        show.console.print(table)


@run_app.command("cancel")
def run_cancel(name: str, url: Url = None, token: Token = None) -> None:
    """Stop sending a run's rows (those in flight finish)."""
    run = _post(client_for(url, token), f"/runs/{name}/cancel/")
    show.console.print(f"{name}: {run['status']}")


@run_app.command("resume")
def run_resume(
    name: str,
    stream: Annotated[bool, typer.Option(help="Follow it until it ends.")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Send only the rows of a run not answered yet."""
    client = client_for(url, token)
    run = _post(client, f"/runs/{name}/resume/")
    show.console.print(f"{name}: {run['resumed_rows']} row(s) to send.")
    if stream and run["resumed_rows"]:
        _finish(client, name, [], None, 0.0)


def _get(client: Client, path: str, **params):
    try:
        return client.get(path, **params)
    except ApiError as exc:
        api_failed(exc)


def _post(client: Client, path: str):
    try:
        return client.post(path)
    except ApiError as exc:
        api_failed(exc)


def main() -> None:
    app()
