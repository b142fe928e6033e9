"""Turn parameter dicts into validated config objects with one clear error message."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


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
            field = ".".join(str(p) for p in (where, *err["loc"]))
            secret = any(w in str(p).lower() for p in err["loc"] for w in ("key", "secret", "password"))
            got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) and not secret else ""
            lines.append(f"parameter '{field}': {err['msg']}{got}")
        raise ConfigError(
            "invalid parameters:\n  " + "\n  ".join(lines) + "\nFix conf/base/parameters_*.yml or your --params."
        ) from None


def build_dataclass(cls: type, data: Any, where: str):
    """Instantiate a config dataclass (e.g. ``PPOConfig``) from parameters with a clear error."""
    import dataclasses

    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"invalid parameters:\n  parameter '{where}.{unknown[0]}': unknown field; "
                          f"known fields: {', '.join(sorted(known))}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid parameters:\n  '{where}': {exc}") from None
