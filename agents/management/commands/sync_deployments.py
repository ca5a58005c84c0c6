from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.workspace import SyncReport, WorkspaceError, workspace_connect, workspace_sync

_DRY_RUN_VERBS = {
    "created": "would create",
    "updated": "would update",
    "disabled": "would disable",
}
_SUMMARY_ACTIONS = ("created", "updated", "unchanged", "skipped", "invalid", "disabled")


class Command(BaseCommand):
    help = (
        "Create or update one deployment per Unity Catalog model version served by the agent "
        "endpoints (tasks agent/v1/chat, agent/v2/chat, agent/v1/responses) of a Databricks "
        "workspace, and one per Databricks App that is an Agent Runtime agent (named "
        "agent-bricks-<name>, or named with --app). Credentials come from databricks-sdk "
        "unified auth: --profile, or "
        "DATABRICKS_HOST with DATABRICKS_TOKEN or DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET. "
        "Display names, instructions, custom inputs, access and enabled are never changed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--profile",
            default="",
            help="Profile in ~/.databrickscfg (or DATABRICKS_CONFIG_FILE); stored on the rows "
            "so chat turns authenticate the same way.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Print what would change; write nothing."
        )
        parser.add_argument(
            "--disable-missing",
            action="store_true",
            help="Disable enabled rows of this workspace whose model version no agent endpoint "
            "serves any more, or whose app the workspace no longer has.",
        )
        parser.add_argument(
            "--app",
            action="append",
            default=[],
            metavar="NAME",
            help="Also import this Databricks App as an Agent Runtime deployment though its name "
            "does not start with agent-bricks- (a custom agent deployed as an app). Repeatable.",
        )
        parser.add_argument(
            "--timeout",
            type=int,
            default=30,
            help="Seconds databricks-sdk keeps retrying a workspace that does not answer.",
        )

    def handle(self, *args, **options) -> None:
        if options["timeout"] < 1:
            raise CommandError("--timeout must be at least 1 second.")
        try:
            client = workspace_connect(profile=options["profile"], timeout_s=options["timeout"])
            report = workspace_sync(
                client=client,
                profile=options["profile"],
                dry_run=options["dry_run"],
                disable_missing=options["disable_missing"],
                apps=options["app"],
            )
        except WorkspaceError as exc:
            raise CommandError(str(exc)) from None
        self._print(report, verbosity=options["verbosity"])
        invalid = report.count("invalid")
        if invalid:
            raise CommandError(f"{invalid} deployment(s) did not validate and were not saved.")

    def _print(self, report: SyncReport, verbosity: int) -> None:
        for line in report.lines:
            if line.action == "ignored" and verbosity < 2:
                continue
            verb = _DRY_RUN_VERBS.get(line.action, line.action) if report.dry_run else line.action
            detail = f"  {line.detail}" if line.detail else ""
            self.stdout.write(f"{verb:<13} {line.subject}{detail}")
        counts = ", ".join(f"{report.count(a)} {a}" for a in _SUMMARY_ACTIONS)
        ignored = sum(report.not_agents.values())
        tasks = ", ".join(f"{task}: {n}" for task, n in sorted(report.not_agents.items()))
        ignored_note = f"; {ignored} endpoint(s) are not agents ({tasks})" if ignored else ""
        if report.not_agent_apps:
            ignored_note += (
                f"; {report.not_agent_apps} app(s) are not Agent Runtime agents (--app NAME "
                "imports one)"
            )
        prefix = "Dry run, nothing written. " if report.dry_run else ""
        self.stdout.write(f"{prefix}{report.host}: {counts}{ignored_note}.")
