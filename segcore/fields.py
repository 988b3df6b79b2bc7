"""Typed, range-checked fields of a JSON object (a model card and its sections).

A model card is input like any frame: each value it gives is checked for its type and range
when the card is read, so a bad card fails at once, with one message naming the field,
instead of on every frame (or silently). Each reader takes the object, the key, the dotted
name of the section (``where``) and a default (:data:`REQUIRED` when the key must be there),
and raises :class:`FieldError`, a ``ValueError`` that names the field.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

REQUIRED = object()


class FieldError(ValueError):
    """A field's value has the wrong type or is out of range; ``field`` is its dotted name."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


def show(value) -> str:
    """A short JSON rendering of ``value`` for a message."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _name(where: str, key: str) -> str:
    if not key.isprintable():  # a key with a newline or a control character: quoted, so
        key = json.dumps(key)  # the message stays one line
    return f"{where}.{key}" if where else key


def _get(d: dict, key: str, where: str, default):
    if key in d:
        return d[key]
    if default is REQUIRED:
        raise FieldError(_name(where, key), "is missing")
    return default


def _range(lo, hi, open_lo: bool, open_hi: bool) -> str:
    return f"{'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"


def _as_number(v, name: str, rule: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise FieldError(name, f"must be {rule}, not {show(v)}")
    try:
        x = float(v)
    except OverflowError:  # an integer beyond float's range
        raise FieldError(name, f"must be {rule}, not {show(v)}") from None
    if not math.isfinite(x):
        raise FieldError(name, f"must be {rule}, not {show(v)}")
    return x


def _in_range(x: float, lo, hi, open_lo: bool, open_hi: bool) -> bool:
    return (x > lo if open_lo else x >= lo) and (x < hi if open_hi else x <= hi)


def number(d, key, lo, hi, *, where="", default=REQUIRED, open_lo=False, open_hi=False) -> float:
    """A finite number in the range ``lo``..``hi`` (ends open where asked)."""
    name, v = _name(where, key), _get(d, key, where, default)
    rule = f"a number in {_range(lo, hi, open_lo, open_hi)}"
    x = _as_number(v, name, rule)
    if not _in_range(x, lo, hi, open_lo, open_hi):
        raise FieldError(name, f"must be {rule}, not {show(v)}")
    return x


def integer(d, key, lo, hi, *, where="", default=REQUIRED) -> int:
    """A whole number (a JSON integer, not ``true`` and not ``32.0``) in ``lo``..``hi``."""
    name, v = _name(where, key), _get(d, key, where, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise FieldError(name, f"must be an integer in {lo}..{hi}, not {show(v)}")
    return v


def flag(d, key, *, where="", default=REQUIRED) -> bool:
    """``true`` or ``false`` (the string ``"false"`` is an error, not true)."""
    name, v = _name(where, key), _get(d, key, where, default)
    if not isinstance(v, bool):
        raise FieldError(name, f"must be true or false, not {show(v)}")
    return v


def numbers(d, key, n, lo, hi, *, where="", default=REQUIRED, open_lo=False) -> tuple:
    """A list of exactly ``n`` finite numbers, each in the range."""
    name, v = _name(where, key), _get(d, key, where, default)
    rule = f"a list of {n} numbers in {_range(lo, hi, open_lo, False)}"
    if not isinstance(v, list | tuple) or len(v) != n:
        raise FieldError(name, f"must be {rule}, not {show(v)}")
    xs = tuple(_as_number(x, name, rule) for x in v)
    if not all(_in_range(x, lo, hi, open_lo, False) for x in xs):
        raise FieldError(name, f"must be {rule}, not {show(v)}")
    return xs


def integers(d, key, lo, hi, max_len, *, where="", default=REQUIRED) -> tuple:
    """A non-empty list of at most ``max_len`` integers, each in ``lo``..``hi``."""
    name, v = _name(where, key), _get(d, key, where, default)
    ok = isinstance(v, list | tuple) and 1 <= len(v) <= max_len
    if not ok or any(isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi for x in v):
        raise FieldError(
            name, f"must be a list of 1 to {max_len} integers in {lo}..{hi}, not {show(v)}"
        )
    return tuple(v)


def choice(d, key, options, *, where="", default=REQUIRED):
    """One of ``options``."""
    name, v = _name(where, key), _get(d, key, where, default)
    if isinstance(v, bool) or v not in options:
        allowed = " or ".join(show(o) for o in options)
        raise FieldError(name, f"must be {allowed}, not {show(v)}")
    return v


def text(d, key, *, where="", default=REQUIRED) -> str:
    """A non-empty string."""
    name, v = _name(where, key), _get(d, key, where, default)
    if not isinstance(v, str) or not v.strip():
        raise FieldError(name, f"must be a non-empty string, not {show(v)}")
    return v


def names(d, key, *, where="", default=REQUIRED) -> list | None:
    """A list of distinct non-empty strings (e.g. class names); ``None`` where absent."""
    if key not in d and default is not REQUIRED:
        return default
    name, v = _name(where, key), _get(d, key, where, default)
    if not isinstance(v, list) or not v or any(not isinstance(s, str) or not s.strip() for s in v):
        raise FieldError(name, f"must be a list of non-empty strings, not {show(v)}")
    if len(set(v)) != len(v):
        twice = next(s for s in v if v.count(s) > 1)
        raise FieldError(name, f"names {show(twice)} twice; each name must be distinct")
    return list(v)


def section(d, key, *, where="", default=REQUIRED, known=None) -> dict:
    """A JSON object; with ``known``, a key outside it is an error (a typo is not ignored)."""
    name, v = _name(where, key), _get(d, key, where, default)
    if not isinstance(v, dict):
        raise FieldError(name, f"must be an object, not {show(v)}")
    if known is not None:
        only(v, known, where=name)
    return v


def only(d: dict, known, *, where="") -> dict:
    """``d`` if each of its keys is in ``known``; else the first unknown one is an error."""
    unknown = sorted(str(k) for k in d if k not in known)
    if unknown:
        raise FieldError(
            _name(where, unknown[0]),
            f"is not a field segcore knows (known: {', '.join(sorted(known))})",
        )
    return d


def file_inside(folder, d, key, *, where="", default=REQUIRED, suffix=".onnx") -> Path:
    """A file's path, relative to ``folder`` (or absolute), that stays inside ``folder``.

    The test is on the path as written (``..`` resolved, symlinks not followed): a card
    names files beside it or below it, never ``../../etc/passwd``.
    """
    name, v = _name(where, key), _get(d, key, where, default)
    rule = f"must be the path of a {suffix} file inside the model card's folder"
    if not isinstance(v, str) or not v.strip() or "\0" in v or len(v) > 1024:
        raise FieldError(name, f"{rule}, not {show(v)}")
    base = os.path.normpath(os.path.abspath(folder))
    target = os.path.normpath(os.path.join(base, v))  # an absolute v replaces base
    if os.path.commonpath([base, target]) != base or target == base:
        raise FieldError(name, f"{rule}, not {show(v)} (it points outside that folder)")
    if not target.lower().endswith(suffix):
        raise FieldError(name, f"{rule}, not {show(v)}")
    return Path(folder) / os.path.relpath(target, base)
