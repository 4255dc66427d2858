"""``__eq__``, ``__hash__`` and ``__repr__`` of the config model's frozen dataclasses, compiled on
first use instead of at import.

``@dataclass`` compiles these three from generated source for every class as its module is
imported: about a third of the time the config model takes to import (~0.2 s per process in the
TCG guest, issue 4), spent mostly on classes a process never compares, hashes or prints.  The
model classes are declared::

    @value_methods
    @dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
    class VirtualServer: ...

and the first call of each method compiles the code ``@dataclass(frozen=True)`` would have made
(3.11's: fields compared and hashed as tuples, ``Class(field=value!r, ...)`` with its recursion
guard, the same field selection by ``compare``/``hash``/``repr``) and puts it on the class in
place of the stub: equality, hashing and repr are those of a frozen dataclass.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["value_methods"]

_T = TypeVar("_T", bound=type)


def value_methods(cls: _T) -> _T:
    """Give a ``@dataclass(frozen=True, repr=False, eq=False)`` class a frozen dataclass's
    ``__eq__``, ``__hash__`` and ``__repr__`` (compiled when first called)."""
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    if not params.frozen or params.eq or params.repr:
        raise TypeError(f"{cls.__name__}: value_methods wants "
                        "@dataclass(frozen=True, repr=False, eq=False)")
    for name, make in (("__eq__", _make_eq), ("__hash__", _make_hash),
                       ("__repr__", _make_repr)):
        if name not in cls.__dict__:  # one written in the class body stays, as with @dataclass
            _install(cls, name, make)
    return cls


def _install(cls: type, name: str, make: Callable[[type], Callable[..., Any]]) -> None:
    def stub(self: object, *args: Any) -> Any:
        method = make(cls)
        setattr(cls, name, method)  # every later call goes straight to the compiled method
        return method(self, *args)

    stub.__name__ = name
    stub.__qualname__ = f"{cls.__qualname__}.{name}"
    setattr(cls, name, stub)


def _compile(cls: type, name: str, source: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {}
    exec(source, {"__builtins__": builtins}, namespace)
    method: Callable[..., Any] = namespace[name]
    method.__qualname__ = f"{cls.__qualname__}.{name}"
    return method


def _names(cls: type, keep: Callable[[dataclasses.Field[Any]], bool]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if keep(f)]


def _make_eq(cls: type) -> Callable[..., Any]:
    names = _names(cls, lambda f: f.compare)
    mine = "".join(f"self.{n}," for n in names)
    theirs = "".join(f"other.{n}," for n in names)
    return _compile(cls, "__eq__", "def __eq__(self, other):\n"
                                   " if other.__class__ is self.__class__:\n"
                                   f"  return ({mine})==({theirs})\n"
                                   " return NotImplemented\n")


def _make_hash(cls: type) -> Callable[..., Any]:
    names = _names(cls, lambda f: f.compare if f.hash is None else bool(f.hash))
    mine = "".join(f"self.{n}," for n in names)
    return _compile(cls, "__hash__", f"def __hash__(self):\n return hash(({mine}))\n")


def _make_repr(cls: type) -> Callable[..., Any]:
    import reprlib

    body = ", ".join(f"{n}={{self.{n}!r}}" for n in _names(cls, lambda f: f.repr))
    method = _compile(cls, "__repr__", "def __repr__(self):\n"
                                       f' return self.__class__.__qualname__ + f"({body})"\n')
    return reprlib.recursive_repr()(method)  # '...' for a value that contains itself
