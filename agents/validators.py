"""Field validators for Deployment, each with a message that says what a valid value looks like."""

import json
import re
from urllib.parse import urlsplit

import jsonschema
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, URLValidator
from django.db import models

MAX_CUSTOM_INPUTS_BYTES = 64 * 1024

validate_model_name = RegexValidator(
    r"^[A-Za-z0-9_][A-Za-z0-9_-]*\.[A-Za-z0-9_][A-Za-z0-9_-]*\.[A-Za-z0-9_][A-Za-z0-9_-]*$",
    "Use a Unity Catalog name of the form catalog.schema.model (letters, digits, _ and -).",
)
validate_model_version = RegexValidator(
    r"^[0-9]{1,9}$", "A model version is a whole number, like 3."
)
validate_endpoint_name = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$",
    "An endpoint name has up to 63 letters, digits, _ and -, starting with a letter or digit.",
)
validate_env_var_name = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
    "Give the name of an environment variable (letters, digits and _), not the token itself.",
)
_http_url = URLValidator(schemes=["http", "https"], message="Enter an http:// or https:// URL.")


def validate_http_url(value: str) -> None:
    _http_url(value)
    if urlsplit(value).username is not None:
        # A URL with user:password@ would store a secret in plain text and show it back.
        raise ValidationError("Do not put credentials in the URL; use the authentication fields.")


def validate_json_object(value: object) -> None:
    if not isinstance(value, dict):
        raise ValidationError('Must be a JSON object, like {"top_k": 3}.')
    size = len(json.dumps(value).encode())
    if size > MAX_CUSTOM_INPUTS_BYTES:
        raise ValidationError(f"Is {size} bytes; at most {MAX_CUSTOM_INPUTS_BYTES} are allowed.")


def sanitize_model_name(model_name: str) -> str:
    """Databricks' rule for names derived from a UC model: dots to '-', trailing _ and - dropped."""
    return re.sub(r"[_-]+$", "", model_name.replace(".", "-"))


class HttpUrlField(models.URLField):
    """A URLField that accepts only http(s) URLs without credentials, with one clear message."""

    default_validators = [validate_http_url]

    def formfield(self, **kwargs):
        # A bare host typed into a form means https, as Django 6 will assume anyway.
        return super().formfield(**{"assume_scheme": "https", **kwargs})


def schema_mismatch(schema: dict, value: object) -> str | None:
    """Why `value` does not match the JSON Schema, with where ("At a/b: ..."); None if it does.
    The one check behind custom_inputs at send time and a deployment's default at save time."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "the top level"
    return f"At {where}: {error.message}"
