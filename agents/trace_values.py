"""Reading the values inside MLflow trace dicts: JSON-encoded attributes, ids, timestamps.

Helpers of agents.traces; each is fast on the common case and safe on garbage.
"""

from __future__ import annotations

import binascii
import gc
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

# json.dumps recurses once per nesting level (limit ~1000), so to_dict() moves subtrees deeper
# than NEST_LIMIT spans to a top-level list, and decoded values nested deeper stay text.
NEST_LIMIT = VALUE_DEPTH_LIMIT = 100
_HEX = frozenset("0123456789abcdef")
FAILED = object()
# The C scanner, without json.loads' wrapper (a third of the cost on short values). NaN and
# Infinity raise KeyError in parse_constant: they are not JSON, and DRF's renderer refuses them.
_scan = json.JSONDecoder(parse_constant={}.__getitem__).scan_once


def decode_value(text: str) -> Any:
    """`json.loads(text)`, or FAILED when it is not JSON (or nested too deep to send on)."""
    try:
        value, end = _scan(text, 0)
    except (StopIteration, ValueError, KeyError, RecursionError):
        stripped = text.lstrip(" \t\n\r")
        return decode_value(stripped) if stripped and stripped != text else FAILED
    if end != len(text) and text[end:].strip(" \t\n\r"):
        return FAILED
    if len(text) > VALUE_DEPTH_LIMIT and text.count("[") + text.count("{") > VALUE_DEPTH_LIMIT:
        stack = [(value, 0)]
        while stack:  # iterative: the value may be nested ~1000 deep
            item, depth = stack.pop()
            if depth > VALUE_DEPTH_LIMIT:
                return FAILED
            items = item.values() if type(item) is dict else item if type(item) is list else ()
            stack.extend((v, depth + 1) for v in items)
    return value


def jsonable(value: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """A JSON-safe copy of an input value not read by decode_value: the caller may pass Python
    objects (kept as their type name), NaN, cycles; depth and size are capped."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value if value.bit_length() < 8000 else "<int too large>"  # str(int) limit
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    budget = [20_000] if budget is None else budget
    budget[0] -= 1
    if depth >= VALUE_DEPTH_LIMIT or budget[0] < 0:
        return "<truncated>"
    if isinstance(value, dict):
        return {as_text(k): jsonable(v, depth + 1, budget) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, depth + 1, budget) for v in value]
    return f"<{type(value).__name__}>"


def as_text(value: Any) -> str:
    if value.__class__ is str:
        return value
    if value.__class__ is int:  # chunk ids often are
        return str(value)
    return "" if value is None else json.dumps(jsonable(value), ensure_ascii=False)


def as_opt_text(value: Any) -> str | None:
    return None if value is None or value == "" else as_text(value)


def read_time(value: Any, what: str, problems: list[str]) -> int | None:
    """Nanoseconds (OTel's uint64) from an int, float or digit string (protobuf's int64 form)."""
    if isinstance(value, (str, float)) and len(str(value)) < 30:
        with suppress(ValueError, OverflowError):  # NaN, inf, "12.5", "abc"
            value = int(value)
    if value.__class__ is int and 0 <= value < 1 << 64:  # larger ones overflow float arithmetic
        return value
    if value is not None:
        problems.append(
            f"The {what} time {as_text(value)[:40]} is unusable (not uint64 nanoseconds)."
        )
    return None


def hex_span_id(value: Any) -> str | None:
    """Hex span id from 2.x `0x…`/hex, 3.5 hex or 3.x base64; None when absent or all zeros
    (OTel's "invalid" id); ValueError when unreadable."""
    if value is None or value == "":
        return None
    if value.__class__ is int and 0 <= value < 1 << 64:
        return format(value, "016x") if value else None
    if not isinstance(value, str):
        raise ValueError
    text = value.strip()
    if text.endswith("="):  # base64 of 8 bytes always ends in "=", hex never does
        try:
            raw = binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError):
            raw = b""
        digits = raw.hex() if len(raw) == 8 else ""
    else:
        digits = text[2:].lower() if text[:2] in ("0x", "0X") else text.lower()
    if not digits or len(digits) > 16 or not _HEX.issuperset(digits):
        raise ValueError
    return digits.rjust(16, "0") if digits.strip("0") else None


@contextmanager
def gc_paused() -> Iterator[None]:
    # Our objects are acyclic, and GC passes over a big input's objects cost as much as our work.
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
