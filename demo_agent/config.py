"""The demo agent's settings: fixed ones (set at start) and knobs (changeable at run time).

The same checks serve the command line and `POST /_demo/config`, so a value the CLI refuses is
refused at run time too, with the same message.
"""

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

MAX_LATENCY_MS = 600_000  # ten minutes: more is surely a typo, and would outlive any client
MAX_COLD_START_S = 600.0
MAX_CHUNK_DELAY_MS = 10_000  # per chunk: a 100-word answer at the maximum already takes 17 min
DEFAULT_STREAM_CHUNK_DELAY_MS = 15


def check_latency_ms(value: Any) -> int:
    # bool is an int subclass; `true` as a latency is a caller's mistake, not 1 ms.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer number of milliseconds, got {value!r}")
    if not 0 <= value <= MAX_LATENCY_MS:
        raise ValueError(f"must be between 0 and {MAX_LATENCY_MS}, got {value}")
    return value


def check_chunk_delay_ms(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer number of milliseconds, got {value!r}")
    if not 0 <= value <= MAX_CHUNK_DELAY_MS:
        raise ValueError(f"must be between 0 and {MAX_CHUNK_DELAY_MS}, got {value}")
    return value


def check_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number of seconds, got {value!r}")
    if not 0 <= value <= MAX_COLD_START_S:
        raise ValueError(f"must be between 0 and {MAX_COLD_START_S:g}, got {value}")
    return float(value)


def check_rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a fraction between 0.0 and 1.0, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be between 0.0 and 1.0, got {value}")
    return float(value)


@dataclass(frozen=True)
class Knobs:
    """Simulated misbehaviour; every knob at 0 means a fast, healthy endpoint."""

    latency_ms: int = 0  # added to every serving request
    cold_start_s: float = 0.0  # the first serving request waits this long; others wait with it
    error_rate: float = 0.0  # fraction of invocations answered 500
    malformed_rate: float = 0.0  # fraction of invocations answered 200 with a broken body
    feedback_error_rate: float = 0.0  # fraction of feedback posts answered 503
    # pause between two events of a streamed answer; a turn may override it (simulate)
    stream_chunk_delay_ms: int = DEFAULT_STREAM_CHUNK_DELAY_MS


KNOB_CHECKS = {
    "latency_ms": check_latency_ms,
    "cold_start_s": check_seconds,
    "error_rate": check_rate,
    "malformed_rate": check_rate,
    "feedback_error_rate": check_rate,
    "stream_chunk_delay_ms": check_chunk_delay_ms,
}
assert set(KNOB_CHECKS) == {f.name for f in fields(Knobs)}  # a new knob needs a check


def knobs_updated(knobs: Knobs, changes: Any) -> Knobs:
    """Knobs with `changes` applied; ValueError naming the field if any change is invalid."""
    if not isinstance(changes, dict):
        raise ValueError("the body must be a JSON object of knob names to values")
    unknown = sorted(set(changes) - set(KNOB_CHECKS))
    if unknown:
        raise ValueError(f"unknown knob(s) {', '.join(unknown)}; known: {', '.join(KNOB_CHECKS)}")
    checked = {}
    for name, value in changes.items():
        try:
            checked[name] = KNOB_CHECKS[name](value)
        except ValueError as exc:
            raise ValueError(f"{name} {exc}") from None
    return replace(knobs, **checked)


def knobs_dict(knobs: Knobs) -> dict[str, Any]:
    return asdict(knobs)


@dataclass
class AgentConfig:
    """Everything `create_app` needs. Knobs may be replaced at run time; the rest may not."""

    knobs: Knobs = field(default_factory=Knobs)
    token: str | None = None  # when set, every route but /health needs it
    feedback_log: Path = Path("var/demo_agent/feedback.jsonl")
    seed: int | None = None  # seeds the random draws behind the *_rate knobs
