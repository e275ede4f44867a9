"""Declared constraints of settings (bounds, choices, formats) and rules between settings, with one message shape."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

# Every bad setting reads "{name} is {value!r}; expected {what}" (as scikit-learn's _parameter_constraints do).


def problem(name: str, value: Any, expected: str) -> str:
    """The one message shape of a bad setting."""
    return f"{name} is {value!r}; expected {expected}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


@dataclass(frozen=True)
class Interval:
    """A range of numbers; None is an open end. `closed`: which ends are included ("both", "left", "right",
    "neither"). The setting's type (int or float) is checked before its bounds."""

    left: float | None = None
    right: float | None = None
    closed: str = "both"

    def _left_ok(self, value: float) -> bool:
        return self.left is None or (value >= self.left if self.closed in ("both", "left") else value > self.left)

    def _right_ok(self, value: float) -> bool:
        return self.right is None or (value <= self.right if self.closed in ("both", "right") else value < self.right)

    def check(self, name: str, value: Any) -> str | None:
        """None when `value` lies in the interval, else the problem: the bound it crosses (both, between floats)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return problem(name, value, "a number " + str(self))
        if self._left_ok(value) and self._right_ok(value):
            return None
        if isinstance(value, float) and self.left is not None and self.right is not None:
            return problem(name, value, "a number " + str(self))
        return problem(name, value, self._side(low=not self._left_ok(value)))

    def _side(self, *, low: bool) -> str:
        if low:
            return ("at least " if self.closed in ("both", "left") else "greater than ") + _number(self.left)
        return ("at most " if self.closed in ("both", "right") else "less than ") + _number(self.right)

    def __str__(self) -> str:
        if self.left is not None and self.right is not None:
            opening = "[" if self.closed in ("both", "left") else "("
            closing = "]" if self.closed in ("both", "right") else ")"
            return f"in {opening}{_number(self.left)}, {_number(self.right)}{closing}"
        if self.left is not None:
            return ">= " + _number(self.left) if self.closed in ("both", "left") else "> " + _number(self.left)
        if self.right is not None:
            return "<= " + _number(self.right) if self.closed in ("both", "right") else "< " + _number(self.right)
        return "any number"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values."""

    values: tuple[Any, ...]

    def check(self, name: str, value: Any) -> str | None:
        """None for one of the values, else the problem naming them all."""
        return None if value in self.values else problem(name, value, str(self))

    def __str__(self) -> str:
        return "one of " + ", ".join(map(str, self.values))


@dataclass(frozen=True)
class AnyOf:
    """Any of several constraints holds; `text` says what is expected."""

    constraints: tuple[Any, ...]
    text: str

    def check(self, name: str, value: Any) -> str | None:
        """None when one of the constraints holds, else the problem stating `text`."""
        return None if any(c.check(name, value) is None for c in self.constraints) else problem(name, value, self.text)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Checked:
    """A value a function accepts (e.g. a duration or an objective): `parse(value, source=name)` raises the
    function's own ConfigError; `text` says what is expected."""

    parse: Callable[..., Any]
    text: str

    def check(self, name: str, value: Any) -> str | None:
        """None when `parse` accepts the value; its ConfigError propagates otherwise."""
        self.parse(value, source=name)
        return None

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class CommaList:
    """Comma-separated names, each one of `values` (blanks and repeats allowed)."""

    values: tuple[str, ...]

    def check(self, name: str, value: Any) -> str | None:
        """None when every name is known, else the problem naming the first unknown one."""
        unknown = [part.strip() for part in str(value).split(",") if part.strip() and part.strip() not in self.values]
        return (f"{name} has {unknown[0]!r}; expected a comma-separated list of {', '.join(self.values)}"
                if unknown else None)

    def __str__(self) -> str:
        return "comma-separated: " + ", ".join(self.values)


@dataclass(frozen=True)
class Rule:
    """A rule between settings: `broken(settings)` gives the problem (naming every setting involved) or None."""

    says: str
    broken: Callable[[Any], str | None]


def broken_rule(settings: Any, rules: tuple[Rule, ...]) -> str | None:
    """The problem of the first of `rules` that `settings` break, or None."""
    return next((message for message in (rule.broken(settings) for rule in rules) if message), None)
