"""Whether a value read back from JSON has the types its dataclass declares, all the way down.

``from_dict`` builds a dataclass from whatever JSON it is given: a record with a string where a time
should be builds fine and fails later, in whatever reads that field (a table's recovery callback,
every round of the user's). :func:`type_error` finds such a value at once, by the dataclasses' own
annotations: a dataclass field is checked against its type (``str``, ``int``, ``float``, ``bool``,
``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[K, V]``, ``Any``, another dataclass or class).
An ``int`` is a ``float`` (JSON writes 2.0 as 2.0, but a hand-written 2 means the same); a ``bool``
is neither.

>>> from dataclasses import dataclass
>>> @dataclass
... class Visit:
...     page: str
...     at: float
...     tags: list[str]
>>> type_error(Visit("/", 1.0, ["a"]), Visit) is None
True
>>> type_error(Visit("/", "soon", ["a", 2]), Visit)
"at: expected float, got 'str'"
>>> type_error(Visit("/", 2, ["a", 2]), Visit)
"tags[1]: expected str, got 'int'"
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], str | None]  # a value -> where it differs and how, or None


def type_error(value: Any, hint: Any) -> str | None:
    """Where ``value`` first differs from the type ``hint`` and how, or None when it has it."""
    return _check(hint)(value)


@functools.cache
def _check(hint: Any) -> Check:
    """The check of ``hint``, built once per type: recovery reads every user's state through it."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return lambda value: None
    if origin is types.UnionType or origin is typing.Union:
        arms = [_check(arm) for arm in args]

        def check_union(value: Any) -> str | None:
            errors = [arm(value) for arm in arms]
            return None if None in errors else _expected(value, hint)

        return check_union
    exact = _EXACT.get(hint)
    if exact is not None:
        return lambda value: None if type(value) in exact else _expected(value, hint)
    if origin is list or (origin is tuple and args[1:] == (...,)):
        item = _check(args[0])

        def check_sequence(value: Any) -> str | None:
            if type(value) is not origin:
                return _expected(value, hint)
            for index, each in enumerate(value):
                if error := item(each):
                    return f"[{index}]{_sep(error)}"
            return None

        return check_sequence
    if origin is dict:
        key, item = _check(args[0]), _check(args[1])

        def check_dict(value: Any) -> str | None:
            if type(value) is not dict:
                return _expected(value, hint)
            for name, each in value.items():
                if error := key(name):
                    return f"<key>{_sep(error)}"
                if error := item(each):
                    return f"[{name!r:.40}]{_sep(error)}"
            return None

        return check_dict
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        fields = [(item.name, _check(hints[item.name])) for item in dataclasses.fields(hint)]

        def check_dataclass(value: Any) -> str | None:
            if not isinstance(value, hint):
                return _expected(value, hint)
            for name, check in fields:
                if error := check(getattr(value, name)):
                    return f"{name}{_sep(error)}"
            return None

        return check_dataclass
    if origin is not None:
        raise TypeError(f"no check for {hint}")  # a container type this module does not know yet
    return lambda value: None if isinstance(value, hint) else _expected(value, hint)


# Types a value decoded from JSON has exactly (an int is a float; a bool is neither).
_EXACT: dict[Any, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (float, int),
    bool: (bool,),
    None: (type(None),),
    type(None): (type(None),),
}


def _sep(error: str) -> str:
    return error if error.startswith(("[", "<", ":")) else f".{error}"


def _expected(value: Any, hint: Any) -> str:
    name = getattr(hint, "__name__", None) if not typing.get_args(hint) else None
    return f": expected {name or hint}, got {type(value).__name__!r}"
