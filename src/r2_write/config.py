"""Turn parameter dicts into validated config objects with one clear error message."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)
_SHOWN_CHARS = 80  # a bad value is shown at most this long in a message


class ConfigError(ValueError):
    """A parameter is wrong; the message names the field and what is expected."""


def parse_params(model: type[T], data: Any, where: str) -> T:
    """Validate ``data`` against ``model``; raise :class:`ConfigError` naming each bad field.

    Args:
        model: The pydantic model class.
        data: The raw parameters (a dict from YAML).
        where: The parameter path, e.g. ``"synthesis.writer_llm"``, used in messages.

    Returns:
        The validated model instance.
    """
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p)[:_SHOWN_CHARS] for p in (where, *err["loc"]))
            secret = any(w in str(p).lower() for p in err["loc"] for w in ("key", "secret", "password"))
            got = f" (got {_shown(err['input'])})" if "input" in err and not isinstance(err["input"], dict) and not secret else ""
            lines.append(f"parameter '{field}': {_message(model, err)}{got}")
        raise ConfigError(
            "invalid parameters:\n  " + "\n  ".join(lines) + "\nFix conf/base/parameters_*.yml or your --params."
        ) from None


def _message(model: type[BaseModel], err: dict) -> str:
    """Pydantic's message, without its "Value error, " prefix; an unknown key also lists the known fields."""
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        known = _fields_at(model, err["loc"][:-1])
        if known:
            msg = f"unknown field; known fields: {', '.join(sorted(known))} ({msg})"
    return msg


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the (nested) model at ``loc`` inside ``model``; [] where that is no model."""
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        nested = [a for a in (field.annotation, *typing.get_args(field.annotation)) if _is_model(a)] if field else []
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def build_dataclass(cls: type, data: Any, where: str):
    """Instantiate a config dataclass from parameters with a clear error.

    No stage uses it any more (every stage config, PPO's included, is a pydantic model read by
    :func:`parse_params`); it stays until tests/reliability/test_bad_input.py stops importing it.

    Unknown keys and values of the wrong type (checked against the field annotations:
    ``int``, ``float`` (finite), ``bool``, ``str`` and ``X | None``) fail with a
    :class:`ConfigError` naming the field; the dataclass's own ``__post_init__`` checks
    (ranges, divisibility) follow.
    """
    if not isinstance(data, (dict, type(None))):
        raise ConfigError(f"invalid parameters:\n  parameter '{where}': expected a mapping of fields, got {_shown(data)}")
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - known, key=str)
    if unknown:
        name = str(unknown[0]) if len(str(unknown[0])) <= _SHOWN_CHARS else f"{str(unknown[0])[:_SHOWN_CHARS]}..."
        raise ConfigError(f"invalid parameters:\n  parameter '{where}.{name}': unknown field; "
                          f"known fields: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        expected = hints.get(name)
        if expected is not None and not _matches(value, expected):
            raise ConfigError(f"invalid parameters:\n  parameter '{where}.{name}': expected {_type_name(expected)}, "
                              f"got {_shown(value)}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        text = str(exc) if len(str(exc)) <= 300 else str(exc)[:297] + "..."
        raise ConfigError(f"invalid parameters:\n  '{where}': {text}") from None


def _shown(value: Any) -> str:
    """A bad value's repr for a message, cut to ``_SHOWN_CHARS``."""
    text = repr(value) if not isinstance(value, str) or len(value) <= _SHOWN_CHARS else repr(value[:_SHOWN_CHARS])
    if len(text) > _SHOWN_CHARS:
        text = f"{text[: _SHOWN_CHARS - 3]}..."
    return text if not isinstance(value, (str, list, dict)) or len(value) <= _SHOWN_CHARS else f"{text} ({len(value)} long)"


def _matches(value: Any, expected: Any) -> bool:
    """Whether ``value`` fits a simple annotation (other annotations always fit)."""
    origin = typing.get_origin(expected)
    if origin is typing.Union or origin is types.UnionType:
        return any(_matches(value, arg) for arg in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if expected is str:
        return isinstance(value, str)
    return True


def _type_name(expected: Any) -> str:
    return " or ".join("None" if a is type(None) else "a finite number" if a is float else getattr(a, "__name__", str(a))
                       for a in typing.get_args(expected) or (expected,))
