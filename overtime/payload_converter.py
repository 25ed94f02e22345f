"""The payload converter: Temporal's JSON converter, with each dataclass's field types
resolved once instead of on every decode, and dataclasses encoded without a deep copy.

The SDK turns a payload into a dataclass by calling ``typing.get_type_hints`` on the class
for every value it decodes, and our dataclasses are declared under ``from __future__
import annotations``, so each call evaluates every annotation string again. For a telephony
batch (a batch, its requests, their results) that was a third of the worker's CPU per
Update and a good part of the API's. The wire format is the SDK's own, unchanged: the JSON
is the same, histories recorded before this converter replay, and a value that does not
fit its type fails the same way (``TypeError``, a rejected Update, a dropped signal).

Encoding: the SDK's JSON encoder turns a dataclass into a dict with ``dataclasses.asdict``,
which deep-copies every nested value first; ours hands the encoder the fields as they are
and lets it recurse, which writes the same JSON (tests/test_payload_converter.py compares
the bytes).

It plugs in where the SDK allows it (a ``JSONTypeConverter`` and a ``JSONEncoder``, as
``temporalio.contrib.pydantic`` does) and handles dataclasses only; every other type, and
every field inside a dataclass, still goes through the SDK's code.
"""

from __future__ import annotations

import dataclasses
import types
import weakref
from typing import Any, Union, get_type_hints

from temporalio.converter import (
    AdvancedJSONEncoder,
    CompositePayloadConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    JSONTypeConverter,
)
from temporalio.converter import value_to_type as sdk_value_to_type


@dataclasses.dataclass(frozen=True)
class _FieldPlan:
    name: str
    hint: Any
    init: bool
    # JSON value types the SDK would hand back unchanged for this hint (``str`` for
    # ``str``, ``int`` and ``None`` for ``int | None``, ...): taken as they are.
    as_is: frozenset[type]


_PLAIN = (str, int, bool)


def _as_is(hint: Any) -> frozenset[type]:
    if hint in _PLAIN:
        return frozenset({hint})
    args = getattr(hint, "__args__", ())
    is_union = isinstance(hint, types.UnionType) or getattr(hint, "__origin__", None) is Union
    if is_union and len(args) == 2 and type(None) in args:
        (other,) = [a for a in args if a is not type(None)]
        if other in _PLAIN:
            return frozenset({other, type(None)})
    return frozenset()


# Per dataclass, weakly: the SDK's strict sandbox (used by the tests' replays) re-imports
# workflow modules per run, whose classes must not be kept alive by this cache.
_PLANS: weakref.WeakKeyDictionary[type, tuple[_FieldPlan, ...]] = weakref.WeakKeyDictionary()


def _plan(cls: type) -> tuple[_FieldPlan, ...]:
    plan = _PLANS.get(cls)
    if plan is None:
        hints = get_type_hints(cls)
        plan = tuple(
            _FieldPlan(f.name, hints[f.name], f.init, _as_is(hints[f.name]))
            for f in dataclasses.fields(cls)
        )
        _PLANS[cls] = plan
    return plan


class CachedDataclassConverter(JSONTypeConverter):
    """The SDK's dataclass conversion (``value_to_type``'s dataclass branch), with the
    class's fields and their types looked up once per class."""

    def to_typed_value(self, hint: type, value: Any) -> Any:
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            return JSONTypeConverter.Unhandled
        if not isinstance(value, dict):
            raise TypeError(f"Cannot convert to dataclass {hint}, value is {type(value)} not dict")
        converters = _CONVERTERS
        init_values: dict[str, Any] = {}
        later: dict[str, Any] = {}
        for field in _plan(hint):
            raw = value.get(field.name, dataclasses.MISSING)
            if raw is dataclasses.MISSING:
                continue  # a required one missing fails the constructor, as in the SDK
            if type(raw) in field.as_is:
                converted = raw
            else:
                try:
                    converted = sdk_value_to_type(field.hint, raw, converters)
                except Exception as err:
                    raise TypeError(
                        f"Failed converting field {field.name} on dataclass {hint}"
                    ) from err
            if field.init:
                init_values[field.name] = converted
            else:
                later[field.name] = converted
        obj = hint(**init_values)
        for name, converted in later.items():
            object.__setattr__(obj, name, converted)  # init=False fields, frozen or not
        return obj


_CONVERTERS: list[JSONTypeConverter] = [CachedDataclassConverter()]
_FIELD_NAMES: weakref.WeakKeyDictionary[type, tuple[str, ...]] = weakref.WeakKeyDictionary()


class ShallowDataclassEncoder(AdvancedJSONEncoder):
    """The SDK's encoder, but a dataclass becomes a dict of its fields as they are (the
    encoder recurses into them) instead of a deep copy made by ``dataclasses.asdict``."""

    def default(self, o: Any) -> Any:
        cls = type(o)
        if dataclasses.is_dataclass(cls) and not isinstance(o, type):
            names = _FIELD_NAMES.get(cls)
            if names is None:
                names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
            return {name: getattr(o, name) for name in names}
        return super().default(o)


class OvertimePayloadConverter(CompositePayloadConverter):
    """The SDK's default payload converters, with the JSON one using the cached
    dataclass conversion. Instantiated by the SDK (also inside the workflow sandbox)."""

    def __init__(self) -> None:
        json_converter = JSONPlainPayloadConverter(
            encoder=ShallowDataclassEncoder, custom_type_converters=_CONVERTERS
        )
        super().__init__(
            *(
                json_converter if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )
