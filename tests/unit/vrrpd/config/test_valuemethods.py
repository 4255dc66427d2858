"""The config model's lazily compiled ``__eq__``/``__hash__``/``__repr__`` (``value_methods``) are
those of a frozen dataclass, checked on every value the example and corpus configs produce."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vrrpd.config import model, model_common, model_lvs, model_vrrp
from vrrpd.config.loader import load
from vrrpd.config.valuemethods import value_methods

REPO = Path(__file__).resolve().parents[4]
CONFIGS = sorted([*REPO.glob("etc/*.conf"), *REPO.glob("tests/netns/config_corpus/*.conf")])
MODEL_CLASSES = sorted({v for m in (model, model_common, model_lvs, model_vrrp)
                        for v in vars(m).values()
                        if isinstance(v, type) and dataclasses.is_dataclass(v)
                        and v.__module__.startswith("vrrpd.config.model")},
                       key=lambda c: c.__qualname__)


def values(obj: Any, seen: set[int]) -> Iterator[Any]:
    """Every model dataclass instance reachable from ``obj``."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        yield obj
        for f in dataclasses.fields(obj):
            yield from values(getattr(obj, f.name), seen)
    elif isinstance(obj, (tuple, list, set, frozenset)):
        for item in obj:
            yield from values(item, seen)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from values(key, seen)
            yield from values(item, seen)


def all_values() -> list[Any]:
    out: list[Any] = []
    seen: set[int] = set()
    for path in CONFIGS:
        config, _ = load(str(path), config_id="test")
        out.extend(values(config, seen))
    for cls in MODEL_CLASSES:  # classes no config here builds: their defaults
        try:
            out.append(cls())
        except TypeError:
            pass
    return out


VALUES = all_values()


def names(obj: Any, keep: str) -> list[str]:
    fields = dataclasses.fields(obj)
    if keep == "hash":
        return [f.name for f in fields if (f.compare if f.hash is None else f.hash)]
    return [f.name for f in fields if getattr(f, keep)]


def test_the_configs_reach_nearly_every_model_class() -> None:
    reached = {type(v) for v in VALUES}
    assert len(CONFIGS) > 50
    missing = {c.__name__ for c in MODEL_CLASSES} - {c.__name__ for c in reached}
    assert len(missing) <= 3, missing  # abstract bases and blocks only valid nested deeper


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__qualname__)
def test_every_model_class_is_a_frozen_value(cls: type) -> None:
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen
    for name in ("__eq__", "__hash__", "__repr__"):
        assert name in cls.__dict__, name  # its own (stub or compiled), never object's


def test_repr_is_the_dataclass_repr() -> None:
    for v in VALUES:
        fields = ", ".join(f"{n}={getattr(v, n)!r}" for n in names(v, "repr"))
        assert repr(v) == f"{type(v).__qualname__}({fields})"


def test_hash_is_the_tuple_hash_of_the_fields() -> None:
    hashed = 0
    for v in VALUES:
        fields = tuple(getattr(v, n) for n in names(v, "hash"))
        try:
            expected = hash(fields)
        except TypeError:  # a dict inside (Config's maps): unhashable, as a dataclass is
            with pytest.raises(TypeError):
                hash(v)
            continue
        assert hash(v) == expected
        hashed += 1
    assert hashed > len(VALUES) // 2


def test_equality_compares_every_compared_field_and_the_exact_class() -> None:
    for v in VALUES:
        twin = copy.copy(v)
        assert twin is not v and twin == v
        assert (twin != v) is False  # __ne__ is object's negation of __eq__
        assert v.__eq__(object()) is NotImplemented
        for n in names(v, "compare"):
            other = copy.copy(v)
            object.__setattr__(other, n, object())  # frozen: only this way
            assert other != v and v != other, (type(v).__name__, n)


def test_values_stay_frozen() -> None:
    v = next(x for x in VALUES if dataclasses.fields(x))
    name = dataclasses.fields(v)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(v, name, None)


def test_methods_are_compiled_once_then_called_directly() -> None:
    @value_methods
    @dataclasses.dataclass(frozen=True, slots=True, repr=False, eq=False)
    class Pair:
        a: int
        b: tuple[int, ...] = ()
        note: str = dataclasses.field(default="", compare=False, repr=False)

    stub = Pair.__dict__["__eq__"]
    assert Pair(1, (2,), "x") == Pair(1, (2,), "y")  # ``note`` is not compared
    assert Pair.__dict__["__eq__"] is not stub
    assert Pair.__dict__["__eq__"].__qualname__.endswith("Pair.__eq__")
    assert Pair(1) != Pair(2)
    assert repr(Pair(1, (2,))) == f"{Pair.__qualname__}(a=1, b=(2,))"
    assert hash(Pair(1, (2,), "x")) == hash((1, (2,)))
    assert {Pair(1), Pair(1)} == {Pair(1)}


@pytest.mark.parametrize("kw", [{"frozen": False, "repr": False, "eq": False},
                                {"frozen": True, "repr": True, "eq": False},
                                {"frozen": True, "repr": False, "eq": True}])
def test_only_for_frozen_classes_without_generated_methods(kw: dict[str, bool]) -> None:
    class Plain:
        a: int = 0

    with pytest.raises(TypeError, match="value_methods wants"):
        value_methods(dataclasses.dataclass(**kw)(Plain))
