"""JSON booleans are no numbers: pydantic's lax mode reads true as 1 and false as 0, so `"epochs": true`
or `"peak_rss_bytes": false` would be accepted as numbers. Lax mode itself stays (forms send numbers as
strings); only booleans where a model's field expects an int or float are refused, at any depth."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel


def _candidates(annotation: Any) -> list[Any]:
    """The types an annotation admits: Optional/Union members and Annotated's base, unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _candidates(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _candidates(arg)]
    return [annotation]


def _check(annotation: Any, value: Any, loc: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    found: list[tuple[str | int, ...]] = []
    kinds = _candidates(annotation)
    if isinstance(value, bool):
        return [loc] if any(k in (int, float) for k in kinds) and bool not in kinds else []
    for kind in kinds:
        origin = typing.get_origin(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel) and isinstance(value, dict):
            found += boolean_numbers(kind, value, loc)
        elif origin in (list, tuple) and isinstance(value, list):
            args = [a for a in typing.get_args(kind) if a is not Ellipsis]
            for i, item in enumerate(value):
                item_type = args[min(i, len(args) - 1)] if args else Any
                found += _check(item_type, item, (*loc, i))
    return found


def boolean_numbers(model: type[BaseModel], data: Any, loc: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Locations in raw input `data` where `model` expects a number and got a JSON boolean."""
    if not isinstance(data, dict):
        return []
    found: list[tuple[str | int, ...]] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key in data:
            found += _check(field.annotation, data[key], (*loc, key))
    return found


def refuse_boolean_numbers(model: type[BaseModel], data: Any) -> Any:
    """For a model_validator(mode="before"): raise when data has a boolean where a number belongs."""
    bad = boolean_numbers(model, data)
    if bad:
        where = ", ".join(".".join(str(p) for p in loc) for loc in bad)
        raise ValueError(f"expected a number, got true/false: {where}")
    return data
