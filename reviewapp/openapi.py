"""A finishing step for the OpenAPI schema, so that clients generated from it accept what the
API answers. drf-spectacular writes a few shapes that an exact OpenAPI 3.1 validator refuses;
tests/test_openapi.py checks real answers against the result."""

_EMPTY_STRING = {"type": "string", "maxLength": 0}
_NULL = {"type": "null"}


def exact_schema(generator, request, public, result: dict) -> dict:
    stack = [result]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            _mend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return result


def _mend(node: dict) -> None:
    one_of = node.get("oneOf")
    if isinstance(one_of, list) and len(one_of) == 2:
        if one_of[1] == _EMPTY_STRING:
            # A blank-able URL is `oneOf: [{format: uri}, {maxLength: 0}]`; "" is valid under
            # both (formats are annotations), and oneOf wants exactly one: it means anyOf.
            node["anyOf"] = node.pop("oneOf")
        elif _NULL in one_of and {} in one_of:
            # A nullable JSON field: "any value" already includes null.
            del node["oneOf"]
    # DRF's paginator still writes OpenAPI 3.0's `nullable`, which 3.1 dropped for type lists.
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        del node["nullable"]
        node["type"] = [node["type"], "null"]
