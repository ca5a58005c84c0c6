"""JSON decoding with a cap on nesting depth (settings.JSON_MAX_DEPTH), wherever JSON comes in.

Python's json decoder recurses once per level: a body nested a few thousand levels deep raises
RecursionError (a 500 page), and anything that later walks the value (json.dumps, jsonschema,
templates) recurses the same way. So the depth is measured on the text, without recursion and
before decoding, and a too-deep text is refused with JSONTooDeep (a JSONDecodeError, so callers
that already turn "not JSON" into a clear error do the same for it).

The measure uses C-speed bytes methods only (no Python loop per character): keep only brackets,
quotes and escapes, drop escaped quotes, then strings; removing each adjacent "[]" pair then peels
one level per pass, so at most JSON_MAX_DEPTH passes over the bracket string decide. It is exact
for valid JSON; on invalid JSON json.loads reports the syntax error (and a RecursionError it
raises on an unbalanced text is reported as too deep). Cost: bench/json_depth.py.
"""

import json
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.forms import JSONField as FormJSONField
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant

_STRING = re.compile(rb'"[^"]*"')
# Kept by the first pass: brackets (curly ones turned square, depth is all that counts), quotes,
# backslashes, and every byte that may follow a backslash in a JSON escape, as "e", so each
# escape stays one two-byte unit and the escapes still pair up as in the full text.
_ESCAPE_FOLLOWERS = b"/bfnrtu"
_KEPT = b'[]{}"\\' + _ESCAPE_FOLLOWERS
_SHRINK_TABLE = bytes.maketrans(b"{}" + _ESCAPE_FOLLOWERS, b"[]" + b"e" * len(_ESCAPE_FOLLOWERS))
_SHRINK_DELETE = bytes(b for b in range(256) if b not in _KEPT)
_SMALL = 100_000


class JSONTooDeep(json.JSONDecodeError):
    """A JSONDecodeError, so code that handles "not JSON" (Django's form field) handles it too;
    its text is only the reason (no line and column: the whole value is refused)."""

    def __init__(self, limit: int):
        super().__init__(f"JSON nested deeper than {limit} levels", "", 0)
        self.args = (f"JSON nested deeper than {limit} levels.",)
        self.limit = limit


def max_depth() -> int:
    return settings.JSON_MAX_DEPTH


def nests_deeper_than(text: str | bytes, limit: int) -> bool:
    """Whether valid JSON `text` has more than `limit` arrays/objects inside one another."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if len(data) <= _SMALL and data.count(b"[") + data.count(b"{") <= limit:
        return False  # too few brackets to nest that deep (big texts always have enough)
    # About 30% of the text is left; then the escaped backslashes and quotes go (\\ pairs first,
    # so the \" left are exactly the escaped quotes), and every other backslash with its "e".
    data = data.translate(_SHRINK_TABLE, _SHRINK_DELETE)
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    data = data.translate(None, b"e\\")
    # Now every " delimits a string. Two adjacent quotes are an empty string or the end and
    # start of two strings with nothing between them: dropping them leaves every other byte
    # inside or outside a string as it was, and leaves few strings for the regex.
    brackets = _STRING.sub(b"", data.replace(b'""', b""))
    for _ in range(limit):
        if not brackets:
            return False
        peeled = brackets.replace(b"[]", b"")  # every innermost pair: one level less
        if len(peeled) == len(brackets):
            return False  # unbalanced: not JSON, json.loads says where
        brackets = peeled
    return bool(brackets)


def check_depth(text: str | bytes, limit: int | None = None) -> None:
    limit = max_depth() if limit is None else limit
    if nests_deeper_than(text, limit):
        raise JSONTooDeep(limit)


def loads(text: str | bytes, *, limit: int | None = None, **kwargs: Any) -> Any:
    """json.loads, refusing text nested deeper than the limit with JSONTooDeep."""
    limit = max_depth() if limit is None else limit
    check_depth(text, limit)
    try:
        return json.loads(text, **kwargs)
    except RecursionError:  # an unbalanced text the measure leaves to the decoder
        raise JSONTooDeep(limit) from None


class DepthLimitedJSONDecoder(json.JSONDecoder):
    """For `cls=` / `decoder=` arguments (Django's and DRF's JSON fields)."""

    def decode(self, s: str, *args: Any, **kwargs: Any) -> Any:
        limit = max_depth()
        check_depth(s, limit)
        try:
            return super().decode(s, *args, **kwargs)
        except RecursionError:
            raise JSONTooDeep(limit) from None


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSON parser with the depth cap: a too-deep body is a 400 saying so."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        body = stream.read() if stream is not None else b""
        try:
            text = body.decode(encoding)
            parse_constant = strict_constant if self.strict else None
            return loads(text, parse_constant=parse_constant)
        except JSONTooDeep as exc:
            raise ParseError(f"{exc} Nothing was saved.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class DepthLimitedFormJSONField(FormJSONField):
    """A form's JSON field (admin) that refuses too-deep JSON with a message saying so."""

    def __init__(self, *, decoder=None, **kwargs: Any):
        super().__init__(decoder=decoder or DepthLimitedJSONDecoder, **kwargs)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and not self.disabled:
            try:
                check_depth(value)
            except JSONTooDeep as exc:  # Django's own message would only say "not valid JSON"
                raise ValidationError(str(exc), code="too_deep") from None
        return super().to_python(value)


class DepthLimitedJSONField(serializers.JSONField):
    """DRF's JSON field for form-encoded API bodies, whose JSON fields arrive as text (a JSON
    body is already checked by DepthLimitedJSONParser): too deep is a 400 saying so."""

    def __init__(self, **kwargs: Any):
        kwargs["decoder"] = kwargs.get("decoder") or DepthLimitedJSONDecoder
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, (str, bytes)) and (self.binary or getattr(data, "is_json_string", 0)):
            try:
                check_depth(data)
            except JSONTooDeep as exc:
                raise serializers.ValidationError(str(exc), code="too_deep") from None
        return super().to_internal_value(data)


# For ModelAdmin.formfield_overrides: too-deep JSON typed into the admin is a form error saying
# so (not a RecursionError).
ADMIN_JSON_OVERRIDES = {models.JSONField: {"form_class": DepthLimitedFormJSONField}}
