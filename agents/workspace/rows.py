"""The rows a sync writes: the report of what it did, one row created or updated through the
deployment services (or only validated, in a dry run), and rows disabled."""

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

from agents import services
from agents.models import Deployment


@dataclass
class SyncLine:
    action: str  # created, updated, unchanged, skipped, invalid, disabled, ignored
    subject: str
    detail: str = ""


@dataclass
class SyncReport:
    host: str
    dry_run: bool
    lines: list[SyncLine] = field(default_factory=list)
    not_agents: Counter = field(default_factory=Counter)  # task -> endpoints ignored
    not_agent_apps: int = 0  # apps left out: not agent-bricks-*, not named with --app

    def add(self, action: str, subject: str, detail: str = "") -> None:
        self.lines.append(SyncLine(action, subject, detail))

    def count(self, action: str) -> int:
        return sum(1 for line in self.lines if line.action == action)


def write_row(
    identity: dict[str, Any],
    existing: Deployment | None,
    desired: dict[str, Any],
    report: SyncReport,
    *,
    subject: str,
    where: str,
    created: str,
) -> None:
    """Create the row, or update the desired fields that differ, and report which."""
    try:
        if existing is None:
            _create(identity, desired, report.dry_run)
            report.add("created", subject, created)
            return
        changed = [name for name, value in desired.items() if getattr(existing, name) != value]
        if not changed:
            report.add("unchanged", subject, where)
            return
        _update(existing, {name: desired[name] for name in changed}, report.dry_run)
        report.add("updated", subject, "changed " + ", ".join(changed))
    except ValidationError as exc:
        report.add("invalid", subject, _validation_summary(exc))


def _create(identity: dict[str, Any], fields: dict[str, Any], dry_run: bool) -> None:
    if dry_run:
        Deployment(**identity, **fields).full_clean()
    else:
        services.deployment_create(**identity, **fields)


def _update(existing: Deployment, changes: dict[str, Any], dry_run: bool) -> None:
    if dry_run:
        for name, value in changes.items():
            setattr(existing, name, value)
        existing.full_clean()
    else:
        services.deployment_update(deployment=existing, **changes)


def _validation_summary(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return "; ".join(
            f"{name}: {' '.join(messages)}" for name, messages in exc.message_dict.items()
        )
    return " ".join(exc.messages)


def disable_missing(
    rows: Iterable[Deployment],
    served: set[tuple[str, str]],
    report: SyncReport,
    *,
    subject: Callable[[Deployment], str],
    reason: str,
) -> None:
    """Disable the rows (enabled ones of one workspace and one kind, as the caller chose them)
    whose (model_name, model_version) the workspace no longer has."""
    for row in rows:
        if (row.model_name, row.model_version) in served:
            continue
        if not report.dry_run:
            services.deployment_set_enabled(deployment=row, enabled=False)
        report.add("disabled", subject(row), reason)
