"""A dashboard's charts and table: the selectors' figures for one group of deployments, and for
a second one to compare (another version of the model), drawn as series side by side."""

from dataclasses import dataclass

from dashboards import selectors
from dashboards.charts import Chart, Series, line_chart
from dashboards.ranges import Window
from feedback.models import InputType, LabelSchema

SERIES_CSS = ("series-a", "series-b")


@dataclass(frozen=True)
class Group:
    label: str
    deployment_ids: list[int]
    schemas: list[LabelSchema]


@dataclass
class Dashboard:
    charts: list[Chart]
    negative: list  # RequestLog rows with `negatives` and `ratings_count`; reviewers only
    totals: dict[str, dict]  # per group label: turns, errors, ratings in the window


def dashboard(groups: list[Group], window: Window, *, with_turns_table: bool) -> Dashboard:
    starts = window.bucket_starts()
    figures = [_figures_of(group, window) for group in groups]

    def chart(slug, title, unit, pick, asking=None) -> Chart:
        """A line per group and per what `pick` reads of its figures ((suffix, values))."""
        series = []
        for n, (group, got) in enumerate(zip(groups, figures, strict=True)):
            if asking is not None and group not in asking:
                continue
            for k, (suffix, values) in enumerate(pick(got)):
                if len(groups) > 1:
                    label = group.label + suffix
                else:
                    label = suffix.strip(" ·") or group.label
                series.append(Series(label, values, f"{SERIES_CSS[n]} line-{k}"))
        return line_chart(slug, title, unit, starts, window.bucket, series)

    charts = [
        chart("turns", "Turns", "", lambda f: [("", [row["turns"] for _, row in f["turns"]])]),
        chart("latency", "Latency of answered turns", "ms", lambda f: [
            (f" · p{p}", [row[f"p{p}"] for _, row in f["turns"]]) for p in selectors.PERCENTILES
        ]),
        chart("errors", "Failed and incomplete turns", "%", lambda f: [
            (" · failed", [_share(row["errors"], row["turns"]) for _, row in f["turns"]]),
            (" · incomplete", [_share(row["incomplete"], row["turns"]) for _, row in f["turns"]]),
        ]),
    ]  # fmt: skip
    if any(row["total_tokens"] for got in figures for _, row in got["turns"]):
        charts.append(
            chart("tokens", "Tokens (from the traces)", "", lambda f: [
                (" · input", [row["input_tokens"] for _, row in f["turns"]]),
                (" · output", [row["output_tokens"] for _, row in f["turns"]]),
            ])
        )  # fmt: skip
    for schema in _questions(groups):
        charts.append(_question_chart(schema, groups, figures, chart))
    charts.append(
        chart("documents", "Retrieved documents judged relevant", "%", lambda f: [
            ("", [row["share"] for _, row in f["documents"]])
        ])
    )  # fmt: skip
    charts.append(
        chart("reviewers", "Reviewers' throughput (rating versions)", "", lambda f: [
            (" · ratings", [row["ratings"] for _, row in f["reviewers"]]),
            (" · reviewers", [row["reviewers"] for _, row in f["reviewers"]]),
        ])
    )  # fmt: skip
    negative = []
    if with_turns_table:
        negative = selectors.most_negative(groups[0].deployment_ids, window, groups[0].schemas)
    totals = {
        group.label: {
            "turns": sum(row["turns"] for _, row in got["turns"]),
            "errors": sum(row["errors"] for _, row in got["turns"]),
            "ratings": sum(row["ratings"] for _, row in got["reviewers"]),
        }
        for group, got in zip(groups, figures, strict=True)
    }
    return Dashboard(charts, negative, totals)


def _figures_of(group: Group, window: Window) -> dict:
    ids = group.deployment_ids
    return {
        "turns": selectors.turn_figures(ids, window),
        "questions": selectors.question_figures(ids, window, group.schemas),
        "documents": selectors.document_figures(ids, window),
        "reviewers": selectors.reviewer_figures(ids, window),
    }


def _questions(groups: list[Group]) -> list[LabelSchema]:
    """The questions asked of the first group (the one the page is about), charted for each
    group that asks them."""
    return [
        s
        for s in groups[0].schemas
        if s.input_type in (InputType.THUMBS, InputType.CATEGORICAL, InputType.NUMERIC)
        and not s.is_expectation
    ]


def _question_chart(schema: LabelSchema, groups, figures, chart) -> Chart:
    name = schema.name
    asking = [g for g in groups if any(s.name == name for s in g.schemas)]

    def answered(f) -> list:
        return [row.get(name, {}) for _, row in f["questions"]]

    if schema.input_type == InputType.THUMBS:
        title = f"{schema.title} — share positive ({name})"
        return chart(f"q-{name}", title, "%", lambda f: [
            ("", [got.get("share") for got in answered(f)])
        ], asking)  # fmt: skip
    if schema.input_type == InputType.NUMERIC:
        title = f"{schema.title} — mean ({name})"
        return chart(f"q-{name}", title, "", lambda f: [
            ("", [got.get("mean") for got in answered(f)])
        ], asking)  # fmt: skip
    title = f"{schema.title} — answers per option ({name})"
    return chart(f"q-{name}", title, "", lambda f: [
        (f" · {option}", [got.get("options", {}).get(option, 0) for got in answered(f)])
        for option in schema.options or []
    ], asking)  # fmt: skip


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
