"""What the CLI prints: Rich tables for people, JSON for scripts, progress while a run works."""

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # a CI log greps whole lines
POLL_S = 1.0
PLAIN_EVERY_S = 5.0  # without a terminal (CI logs): a line this often


def as_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table_or_json(data: Any, as_json_wanted: bool, table) -> None:
    """`data` as JSON for scripts, else as the table `table(data)` makes."""
    if as_json_wanted:
        as_json(data)
    else:
        console.print(table(data))


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def runs_table(runs: list[dict]) -> Table:
    table = Table("name", "kind", "status", "data", "base run", "rows", "created")
    for run in runs:
        rows = run["rows"]
        table.add_row(run["name"], run["kind"], run["status"], run["data"],
                      run["base_run"] or "", f"{rows['done']}/{rows['total']}",
                      str(run["created_at"])[:19])  # fmt: skip
    return table


def metrics_table(run: dict) -> Table:
    table = Table("metric", "value", "rows", "errors", "skipped", "better", title=run["name"])
    for metric in run["metrics"]:
        table.add_row(metric["name"], _number(metric["value"]), str(metric["count"]),
                      str(metric["errors"]), str(metric["skipped"]),
                      "higher" if metric["higher_is_better"] else "lower")  # fmt: skip
    return table


def _cell(text: Any, width: int = 60) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _score(result: dict) -> str:
    if "value" in result:
        return _number(result["value"])
    if "error" in result:
        return f"error: {_cell(result['error'], 40)}"
    return "skipped"


def rows_table(rows: list[dict], evaluators: list[str]) -> Table:
    table = Table("#", "inputs", "answer", *evaluators, "error", "request id")
    for row in rows:
        scores = [_score(row["scores"].get(name, {})) for name in evaluators]
        inputs = json.dumps(row["inputs"], ensure_ascii=False)
        table.add_row(str(row["position"]), _cell(inputs), _cell(row["answer"]), *scores,
                      _cell(row["error"], 40), row["request_id"] or "")  # fmt: skip
    return table


def compare_tables(result: dict) -> list[Table]:
    metrics = Table("metric", result["base"], result["other"], "delta", "regressed",
                    title=f"{result['other']} against {result['base']}")  # fmt: skip
    for metric in result["metrics"]:
        metrics.add_row(metric["name"], _number(metric["base"]), _number(metric["value"]),
                        _number(metric["delta"]), "yes" if metric["regressed"] else "")  # fmt: skip
    rows = Table("#", f"{result['base']} answer", f"{result['other']} answer", "score changes",
                 title=f"{len(result['changed_rows'])} row(s) differ")  # fmt: skip
    for changed in result["changed_rows"]:
        base, other = changed["base"] or {}, changed["other"] or {}
        before, after = base.get("scores", {}), other.get("scores", {})
        moves = [
            f"{name}: {_score(before.get(name, {}))} → {_score(after.get(name, {}))}"
            for name in sorted(set(before) | set(after))
            if before.get(name, {}).get("value") != after.get(name, {}).get("value")
        ]
        rows.add_row(str(changed["position"]), _cell(base.get("answer")),
                     _cell(other.get("answer")), "; ".join(moves))  # fmt: skip
    return [metrics, rows]


def follow(read_run, name: str) -> dict:
    """Show the run's progress until it ends (rows done, errors, ETA); its last state."""
    run = read_run(name)
    if not console.is_terminal:
        last, started, done_at_start = 0.0, time.monotonic(), run["rows"]["done"]
        while run["status"] == "running":
            if time.monotonic() - last >= PLAIN_EVERY_S:
                _plain(run, eta(run, time.monotonic() - started, done_at_start))
                last = time.monotonic()
            time.sleep(POLL_S)
            run = read_run(name)
        _plain(run, "")
        return run
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("errors {task.fields[errors]}"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(name, total=run["rows"]["total"], errors=0)
        while True:
            progress.update(task, completed=run["rows"]["done"], errors=run["rows"]["errors"])
            if run["status"] != "running":
                break
            time.sleep(POLL_S)
            run = read_run(name)
    console.print(f"{name}: {run['status']}")
    return run


def eta(run: dict, elapsed_s: float, done_at_start: int) -> str:
    """The time left at the rate seen since following began, as text ("" before a rate)."""
    rows, done_since = run["rows"], run["rows"]["done"] - done_at_start
    if done_since <= 0 or elapsed_s <= 0:
        return ""
    left_s = (rows["total"] - rows["done"]) / (done_since / elapsed_s)
    minutes, seconds = divmod(round(left_s), 60)
    return f", ETA {minutes}:{seconds:02d}"


def _plain(run: dict, eta_text: str) -> None:
    rows = run["rows"]
    done = f"{rows['done']}/{rows['total']} rows"
    console.print(f"{run['name']}: {run['status']}, {done}, {rows['errors']} error(s), "
                  f"{rows['in_flight']} in flight{eta_text}")  # fmt: skip
