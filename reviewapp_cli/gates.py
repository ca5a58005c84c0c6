"""`--fail-if "exact_match < 0.8"`: a metric, a comparison and a number. The build fails
when the comparison holds (or the metric has no value: nothing was measured)."""

import operator
import re
from dataclasses import dataclass

OPERATORS = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt,
}  # fmt: skip
_GATE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(<=|>=|==|!=|<|>)\s*(-?[0-9]+(?:\.[0-9]+)?)\s*$")


class BadGate(ValueError):
    pass


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    def failed_by(self, metrics: dict[str, float | None]) -> str:
        """Why this gate fails the build, or "" when it passes."""
        if self.metric not in metrics:
            raise BadGate(
                f"--fail-if {self}: the run has no metric {self.metric!r} "
                f"(it has: {', '.join(metrics)})"
            )
        value = metrics[self.metric]
        if value is None:
            return f"{self.metric} has no value (no row was scored), so {self} cannot pass"
        if OPERATORS[self.op](value, self.threshold):
            return f"{self.metric} = {value:g}, and the build fails if {self}"
        return ""


def parse_gate(text: str) -> Gate:
    match = _GATE.match(text)
    if match is None:
        raise BadGate(
            f'--fail-if {text!r}: write METRIC OP NUMBER, e.g. "exact_match < 0.8" '
            f"(OP one of {' '.join(OPERATORS)})"
        )
    return Gate(match.group(1), match.group(2), float(match.group(3)))
