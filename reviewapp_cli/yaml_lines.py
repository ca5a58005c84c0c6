"""Where a field sits in a YAML file: the server names a field of the file it was sent
(`column_mapping.message`, `evaluators[1].deployment`), the CLI prints that field's line."""

import re

import yaml

_INDEX = re.compile(r"\[(\d+)\]")


def line_of(text: str, field: str) -> int | None:
    """The 1-based line of `field` in the YAML `text`; the nearest enclosing field's line
    when the field itself is absent (a missing key), None when the text is not YAML."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = 1 if node is not None else None
    rest = field
    while node is not None and rest:
        if isinstance(node, yaml.MappingNode):
            # Keys may hold dots (`custom_inputs.top_k`): the longest key the path starts with.
            match = None
            for key, value in node.value:
                name = str(key.value)
                if (rest == name or rest.startswith((name + ".", name + "["))) and (
                    match is None or len(name) > len(str(match[0].value))
                ):
                    match = (key, value)
            if match is None:
                break
            key, node = match
            line = key.start_mark.line + 1
            rest = rest[len(str(key.value)) :].lstrip(".")
        elif isinstance(node, yaml.SequenceNode):
            index = _INDEX.match(rest)
            if index is None or int(index.group(1)) >= len(node.value):
                break
            node = node.value[int(index.group(1))]
            line = node.start_mark.line + 1
            rest = rest[index.end() :].lstrip(".")
        else:
            break
    return line


def field_errors(body: object) -> list[tuple[str, str]]:
    """(field, message) pairs of a 400's body ({field: [messages]} or {detail})."""
    if not isinstance(body, dict):
        return []
    out = []
    for field, messages in body.items():
        if field == "detail":
            continue
        for message in messages if isinstance(messages, list) else [messages]:
            out.append(("" if field == "non_field_errors" else field, str(message)))
    return out
