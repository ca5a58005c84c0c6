"""`reviewapp apply` and `reviewapp export`: deployments, label schemas and review sessions as a
YAML manifest kept in git (its JSON Schema: /api/v1/manifest/schema/ on the server)."""

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from reviewapp_cli import show
from reviewapp_cli.client import ApiError
from reviewapp_cli.common import (
    EXIT_INPUT,
    Token,
    Url,
    api_failed,
    client_for,
    fail,
    read_yaml,
)

SYMBOLS = {"create": "+", "update": "~", "delete": "-"}
# `${STAGING_URL}` in a text of the manifest is that environment variable's value (so one file
# serves several environments); only upper-case names, so other `${...}` text stays as it is.
ENVIRONMENT_REFERENCE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def expand_environment(value: Any) -> Any:
    """The manifest with `${NAME}` replaced in every text; KeyError(NAME) when one is unset."""
    if isinstance(value, str):
        return ENVIRONMENT_REFERENCE.sub(lambda match: os.environ[match.group(1)], value)
    if isinstance(value, list):
        return [expand_environment(item) for item in value]
    if isinstance(value, dict):
        return {key: expand_environment(item) for key, item in value.items()}
    return value


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True)
    text = text.strip()
    return text if len(text) <= 60 else text[:59] + "…"


def print_changes(changes: list[dict], *, dry_run: bool) -> None:
    if not changes:
        show.console.print("No changes: the server matches the file.")
        return
    for change in changes:
        head = f"{SYMBOLS[change['action']]} {change['kind']} {change['key']} ({change['action']})"
        show.console.print(head, highlight=False, markup=False)
        if change["action"] == "update":
            for field, (before, after) in change["fields"].items():
                show.console.print(f"    {field}: {_short(before)} → {_short(after)}",
                                   highlight=False, markup=False)  # fmt: skip
    verb = "would change" if dry_run else "changed"
    show.console.print(f"{len(changes)} object(s) {verb}.")


def apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="The manifest (YAML).")],
    dry_run: Annotated[bool, typer.Option(help="Print the changes; change nothing.")] = False,
    prune: Annotated[bool, typer.Option(help="Delete what the file's sections omit.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Prune without asking.")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Create and update what the manifest names, all or nothing."""
    client = client_for(url, token)
    text, manifest = read_yaml(file)
    try:
        manifest = expand_environment(manifest)
    except KeyError as exc:
        fail(f"{file}: the environment variable {exc.args[0]} is not set", EXIT_INPUT)

    def send(dry: bool) -> list[dict]:
        try:
            body = {"manifest": manifest, "dry_run": dry, "prune": prune}
            return client.post("/manifest/apply/", json=body)["changes"]
        except ApiError as exc:
            api_failed(exc, file=file, text=text)

    if dry_run:
        print_changes(send(True), dry_run=True)
        return
    if prune and not yes:
        planned = send(True)
        deletes = [c for c in planned if c["action"] == "delete"]
        if deletes:
            print_changes(planned, dry_run=True)
            if not sys.stdin.isatty():
                fail("--prune would delete the objects above; pass --yes to do it", EXIT_INPUT)
            if not typer.confirm(f"Delete {len(deletes)} object(s)?"):
                raise typer.Exit(EXIT_INPUT)
    print_changes(send(False), dry_run=False)


def export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here, not stdout.")] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """The server's label schemas, deployments and review sessions as a manifest."""
    client = client_for(url, token)
    try:
        manifest = client.get("/manifest/")
    except ApiError as exc:
        api_failed(exc)
    header = (
        f"# Review App manifest, exported from {client.url}.\n"
        f"# Schema: {client.url}/api/v1/manifest/schema/ · apply with: reviewapp apply -f FILE\n"
    )
    text = header + yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        show.console.print(f"Wrote {out}.")
