"""Turn parameter dicts into validated config objects with one clear error message."""

from __future__ import annotations

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


def _shown(value: Any) -> str:
    """A bad value's repr for a message, cut to ``_SHOWN_CHARS``."""
    text = repr(value) if not isinstance(value, str) or len(value) <= _SHOWN_CHARS else repr(value[:_SHOWN_CHARS])
    if len(text) > _SHOWN_CHARS:
        text = f"{text[: _SHOWN_CHARS - 3]}..."
    return text if not isinstance(value, (str, list, dict)) or len(value) <= _SHOWN_CHARS else f"{text} ({len(value)} long)"
