"""PVE-faithful parameter verification (pve-common ``JSONSchema.pm`` ``validate``/``check_prop``).

``validate(endpoint, raw, json_body=...)`` checks the merged request parameters (path placeholders,
query string and body) against the endpoint's schema, collects every problem, and either raises
``param_error`` (HTTP 400 "Parameter verification failed.", ``errors`` {param: PVE's text}) or returns
the values coerced to Python types:

- ``integer`` -> int, ``number`` -> float, ``boolean`` -> bool, ``string`` -> str,
  ``array`` -> list of coerced items; property strings (``net0``, ``scsi0``) stay the raw string
  after their sub-keys were checked;
- JSON ``null`` counts as "not given";
- parameters the schema does not know are rejected, unless the endpoint allows additional
  properties, in which case they are passed through unchanged.

The checks run in PVE's order and stop at the first failure per parameter: type, format, pattern,
maxLength, minLength, maximum, minimum, enum. One consequence worth knowing: a ``pve-vmid``
parameter with value 99 fails the format check ("invalid format - value does not look like a valid
VM ID") before its ``minimum`` of 100 is ever compared.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final

from autovibe.sim.errors import param_error
from autovibe.sim.formats import check_format
from autovibe.sim.propstring import PropertyStringError, parse_property_string
from autovibe.sim.schema import Endpoint, Param

MISSING: Final = "property is missing and it is not optional"
NOT_DEFINED: Final = "property is not defined in schema and the schema does not allow additional properties"

_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.\d+|\d+\.|\.\d+|\d+)(?:[eE][+-]?\d+)?$")


class _Invalid:
    """Marker for "this value produced an error" (distinct from a valid None)."""


_INVALID: Final = _Invalid()


def validate(endpoint: Endpoint, raw: Mapping[str, Any], *, json_body: bool) -> dict[str, Any]:
    """Check ``raw`` against ``endpoint`` and return the coerced values, or raise a 400 ``SimApiError``.

    ``raw`` merges path params, query and body. With ``json_body=False`` (query strings, form bodies)
    every value is text, as on the wire, so booleans are only ``"1"``/``"0"`` and repeated form keys
    may be given as a list for ``array`` parameters. With ``json_body=True`` values keep their JSON
    types, so ``true``/``false`` are also booleans, and a JSON list is only valid for ``array`` types.

    >>> snapshot = ApiSchema.load().endpoint("POST", "/nodes/{node}/qemu/{vmid}/snapshot")
    >>> validate(snapshot, {"node": "pve1", "vmid": "100", "snapname": "s1"}, json_body=False)
    {'node': 'pve1', 'vmid': 100, 'snapname': 's1'}
    """
    given = {key: value for key, value in raw.items() if value is not None}
    if not json_body:
        given = {key: _form_value(value) for key, value in given.items()}
    errors: dict[str, str] = {}
    for name, param in endpoint.params.items():
        # Indexed slots (net[n]) expand to many optional keys on PVE; none of them is ever required.
        if name not in given and param.max_index is None and not param.optional and not param.alias:
            _add_error(errors, name, MISSING)
    result: dict[str, Any] = {}
    for key, value in given.items():
        found = endpoint.param(key)
        if found is None:
            if endpoint.additional_properties:
                result[key] = value
            else:
                _add_error(errors, key, NOT_DEFINED)
            continue
        if found.type == "array" and isinstance(value, str) and not json_body:
            # Repeated form keys reach PVE NUL-joined; a lone value is a one-element array.
            value = value.split("\0")
        coerced = _check_value(found, value, key, errors)
        if not isinstance(coerced, _Invalid):
            result[key] = coerced
        if found.requires is not None and found.requires not in given:
            _add_error(errors, found.requires, f"missing property - '{key}' requires this property")
    if errors:
        raise param_error(errors)
    return result


def _form_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_perl_text(item) for item in value]
    return _perl_text(value)


def _add_error(errors: dict[str, str], path: str, message: str) -> None:
    # PVE joins a second message for the same key with a literal backslash-n (single-quoted '\n').
    errors[path] = f"{errors[path]}\\n{message}" if path in errors else message


def _perl_text(value: Any) -> str:
    """How Perl would print a decoded JSON scalar (floats with 15 significant digits)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return format(value, ".15g")
    return str(value)


def _number_text(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else format(number, ".15g")


def _type_error(kind: str | None, value: Any) -> str | None:
    """PVE's ``check_type``: the error text, or None if ``value`` has the right shape for ``kind``."""
    if kind in (None, "any", "null"):
        return None
    if isinstance(value, list):
        return None if kind == "array" else f"type check ('{kind}') failed - got ARRAY"
    if isinstance(value, dict):
        return None if kind == "object" else f"type check ('{kind}') failed - got HASH"
    if isinstance(value, bool):
        return None if kind == "boolean" else f"type check ('{kind}') failed - got JSON::PP::Boolean"
    if kind in ("array", "object"):
        return f"type check ('{kind}') failed"
    text = _perl_text(value)
    if kind == "boolean" and text not in ("0", "1"):
        return f"type check ('boolean') failed - got '{text}'"
    if kind == "integer" and not _INTEGER.match(text):
        return f"type check ('integer') failed - got '{text}'"
    if kind == "number" and not _NUMBER.match(text):
        return f"type check ('number') failed - got '{text}'"
    return None


def _check_value(param: Param, value: Any, path: str, errors: dict[str, str]) -> Any:
    """PVE's ``check_prop`` for one present value: the coerced value, or ``_INVALID`` after an error."""
    failure = _type_error(param.type, value)
    if failure is not None:
        _add_error(errors, path, failure)
        return _INVALID
    if isinstance(value, list):
        if param.items is None:
            return list(value)
        checked = [
            _check_value(param.items, item, f"{path}[{index}]", errors) for index, item in enumerate(value)
        ]
        return _INVALID if any(isinstance(item, _Invalid) for item in checked) else checked
    if isinstance(value, dict):
        return value
    text = _perl_text(value)
    failure = _scalar_error(param, text, path)
    if failure is not None:
        _add_error(errors, path, failure)
        return _INVALID
    return _coerce(param.type, value, text)


def _scalar_error(param: Param, text: str, path: str) -> str | None:
    """Format, pattern, length, range and enum checks, in PVE's order; the first failure's text."""
    if param.format is not None:
        failure = _format_error(param, text, path)
        if failure is not None:
            return f"invalid format - {failure}"
    if param.pattern is not None and _compiled(param.pattern).search(text) is None:
        return "value does not match the regex pattern"
    if param.max_length is not None and len(text) > param.max_length:
        return f"value may only be {param.max_length} characters long"
    if param.min_length is not None and len(text) < param.min_length:
        return f"value must be at least {param.min_length} characters long"
    if _NUMBER.match(text):
        number = float(text)
        if param.maximum is not None and number > param.maximum:
            return f"value must have a maximum value of {_number_text(param.maximum)}"
        if param.minimum is not None and number < param.minimum:
            return f"value must have a minimum value of {_number_text(param.minimum)}"
    if param.enum is not None and text not in param.enum:
        return f"value '{text}' does not have a value in the enumeration '{', '.join(param.enum)}'"
    return None


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    # PVE interpolates the pattern unparenthesised into m/^$pattern$/, so top-level alternatives are
    # anchored on one side only; keeping that quirk keeps the same values valid.
    return re.compile(f"^{pattern}$")


def _format_error(param: Param, text: str, path: str) -> str | None:
    sub_keys = param.property_format
    if sub_keys is None:
        return check_format(str(param.format), text)
    try:
        parsed = parse_property_string(sub_keys, text)
    except PropertyStringError as error:
        return str(error)
    sub_errors: dict[str, str] = {}
    for key, sub in sub_keys.items():
        sub_path = f"{path}.{key}"
        if key in parsed:
            _check_value(sub, parsed[key], sub_path, sub_errors)
        elif not sub.optional and not sub.alias:
            _add_error(sub_errors, sub_path, MISSING)
    for key in parsed:
        required = sub_keys[key].requires if key in sub_keys else None
        if required is not None and required not in parsed:
            _add_error(
                sub_errors, f"{path}.{required}", f"missing property - '{path}.{key}' requires this property"
            )
    if not sub_errors:
        return None
    # PVE's exception text: the message, then one "key: error" line per sub-key error.
    return "format error\n" + "".join(f"{key}: {message}\n" for key, message in sub_errors.items())


def _coerce(kind: str | None, value: Any, text: str) -> Any:
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        return value is True or text == "1"
    if kind == "string":
        return text
    return value
