"""The analysis flags, generated from the :class:`~docvl.pipeline.settings.Settings` fields.

One source for flags, help texts, defaults and ``DOCVL_*`` variables: every Settings field is a
``--field-name`` option (a few keep shorter historical names, :data:`ALIASES`) whose help is the
field's ``description`` followed by its variable and default. A field added to Settings is a flag
of ``plan``, ``run`` and ``serve`` with no edit here. Flags default to None: an unset flag leaves
the field to the environment, then to its default (pydantic-settings).
"""

from __future__ import annotations

import functools
import inspect
import json
import types
import typing
from collections.abc import Callable
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from docvl.pipeline.errors import UsageError
from docvl.pipeline.settings import Settings

#: Flag names kept from the first CLI (each field also answers to its ``--field-name``).
ALIASES: dict[str, tuple[str, ...]] = {
    "tasks": ("--task",),
    "schema_name": ("--schema",),
    "max_images_per_request": ("--max-images",),
    "price_input_per_mtok": ("--price-input",),
    "price_output_per_mtok": ("--price-output",),
}
#: Boolean flags whose off switch has a historical name.
NEGATIVE: dict[str, str] = {"include_text": "--no-text"}
#: Values never shown in ``--help``.
SECRET = frozenset({"password"})
PREFIX = "setting__"
PANEL = "Analysis settings (each also a DOCVL_* variable)"

F = TypeVar("F", bound=Callable[..., Any])


def _unwrap_optional(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def _choices(annotation: Any) -> list[str] | None:
    if typing.get_origin(annotation) is Literal:
        return [str(a) for a in typing.get_args(annotation)]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [str(m.value) for m in annotation]
    return None


def _enum(name: str, choices: list[str]) -> type[StrEnum]:
    """Typer's choices type (it takes enums, not Literals, inside lists)."""
    return StrEnum(name.title().replace("_", ""), {c: c for c in choices})  # type: ignore[return-value]


def _default_text(name: str, info: FieldInfo) -> str:
    if name in SECRET:
        return "unset"
    default = info.get_default(call_default_factory=True)
    if isinstance(default, tuple | list):
        return ",".join(map(str, default)) if default else "none"
    return "none" if default is None else str(default)


def parameter(name: str, info: FieldInfo) -> inspect.Parameter:
    """The Typer parameter of one Settings field."""
    annotation = _unwrap_optional(info.annotation)
    flag = "--" + name.replace("_", "-")
    decls = [*ALIASES.get(name, ()), flag]
    kind: Any = str
    extra: dict[str, Any] = {}
    if annotation is bool:
        kind = bool
        decls = [f"{decls[0]}/{NEGATIVE.get(name, '--no-' + decls[0][2:])}", *decls[1:]]
    elif typing.get_origin(annotation) in (tuple, list):
        item = typing.get_args(annotation)[0]
        choices = _choices(item)
        kind = list[_enum(name, choices)] if choices else list[str]  # type: ignore[misc]
    elif (choices := _choices(annotation)) is not None:
        kind = _enum(name, choices)
    elif annotation in (int, float, str, Path):
        kind = annotation
    else:  # anything richer (mappings, nested models): JSON, as pydantic-settings reads the env
        extra["metavar"] = "JSON"
    help_text = (
        f"{info.description or name.replace('_', ' ')} "
        f"(env DOCVL_{name.upper()}; default {_default_text(name, info)})"
    )
    option = typer.Option(*decls, help=help_text, rich_help_panel=PANEL, **extra)
    return inspect.Parameter(
        PREFIX + name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[kind | None, option],
    )


def convert(name: str, info: FieldInfo, value: Any) -> Any:
    """A flag's value as the field wants it: enum members as their values, repeated values as a
    tuple (duplicates dropped), JSON parsed for fields richer than a scalar."""
    annotation = _unwrap_optional(info.annotation)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return tuple(dict.fromkeys(v.value if isinstance(v, Enum) else v for v in value))
    if isinstance(value, str) and extra_json(annotation):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise UsageError(f"--{name.replace('_', '-')} wants JSON: {exc}") from None
    return value


def extra_json(annotation: Any) -> bool:
    """Whether a field of this annotation takes its flag value as JSON."""
    simple = (bool, int, float, str, Path)
    if annotation in simple or _choices(annotation) is not None:
        return False
    return typing.get_origin(annotation) not in (tuple, list)


def with_settings(func: F) -> F:
    """Add one option per Settings field to a command; the command receives the flags that were
    given as ``overrides`` (field name -> value)."""
    signature = inspect.signature(func, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "overrides"]
    generated = [parameter(n, f) for n, f in Settings.model_fields.items()]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        overrides = {}
        for name in Settings.model_fields:
            value = kwargs.pop(PREFIX + name, None)
            if value is not None and value != []:
                overrides[name] = convert(name, Settings.model_fields[name], value)
        return func(*args, overrides=overrides, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + generated)  # type: ignore[attr-defined]
    return typing.cast(F, wrapper)


def build_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from the given flags over the environment; a bad value is a UsageError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise UsageError(problems) from None
