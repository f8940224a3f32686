"""Numeric invariants of the built-in schemas, checked in Python after the output is merged.

A model declares its rules in its ``invariants`` class variable (see
:class:`docvl.schemas.base.Strict`); :func:`check_invariants` runs them on the final data and
returns one human-readable message per failed check, naming the values (``line_items sum 120.00 !=
subtotal 125.00``). A failed check is a warning on the record, never a validation error: the
document may itself be inconsistent.

Values are read as printed: a plain number, or the ``value`` of a sourced object
(:class:`~docvl.schemas.base.SourcedAmount`). A rule is skipped when a value it needs is missing, so
partial extractions are not reported. Two numbers are equal within 0.01 per value involved (each
printed value is rounded to cents) or a relative 1e-6, whichever is larger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

#: Absolute tolerance per value involved in a comparison.
ABS_TOLERANCE = 0.01
REL_TOLERANCE = 1e-6


class Invariant(Protocol):
    """A check on a model's output: the failures as messages, empty when it holds or cannot be
    checked."""

    def check(self, data: Mapping[str, Any]) -> list[str]: ...


def number(value: Any) -> float | None:
    """A plain number, or the ``value`` of a sourced object; None for anything else."""
    if isinstance(value, Mapping):
        value = value.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def close(a: float, b: float, values: int) -> bool:
    """Equal within ``ABS_TOLERANCE`` per value involved, or ``REL_TOLERANCE``."""
    tolerance = max(ABS_TOLERANCE * values, REL_TOLERANCE * max(abs(a), abs(b)))
    return abs(a - b) <= tolerance + 1e-12


def fmt(value: float) -> str:
    """At least two decimals, more when the value has them (``0.1234``), never exponents."""
    text = f"{value:.6f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def _lines(data: Mapping[str, Any], field: str) -> list[Mapping[str, Any]]:
    items = data.get(field)
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, Mapping)]


def _where(field: str, index: int, item: Mapping[str, Any]) -> str:
    page = item.get("page")
    return f"{field}[{index}]" + (f" (page {page})" if isinstance(page, int) else "")


@dataclass(frozen=True)
class LineProduct:
    """Per line of ``lines``: ``quantity`` × ``unit_price`` == ``amount`` (lines with all three)."""

    lines: str
    quantity: str = "quantity"
    unit_price: str = "unit_price"
    amount: str = "amount"

    def check(self, data: Mapping[str, Any]) -> list[str]:
        out: list[str] = []
        for i, item in enumerate(_lines(data, self.lines)):
            qty, price, amount = (
                number(item.get(k)) for k in (self.quantity, self.unit_price, self.amount)
            )
            if qty is None or price is None or amount is None:
                continue
            product = qty * price
            if not close(product, amount, 2):
                out.append(
                    f"{_where(self.lines, i, item)}: {self.quantity} {fmt(qty)} × "
                    f"{self.unit_price} {fmt(price)} = {fmt(product)} != {self.amount} "
                    f"{fmt(amount)}"
                )
        return out


@dataclass(frozen=True)
class LinesSum:
    """The ``amount`` of every line of ``lines`` adds up to ``total`` (checked when every line has
    an amount and ``total`` is present)."""

    lines: str
    total: str
    amount: str = "amount"

    def check(self, data: Mapping[str, Any]) -> list[str]:
        total = number(data.get(self.total))
        items = _lines(data, self.lines)
        amounts = [number(item.get(self.amount)) for item in items]
        if total is None or not amounts or any(a is None for a in amounts):
            return []
        lines_sum = sum(a for a in amounts if a is not None)
        if close(lines_sum, total, len(amounts) + 1):
            return []
        return [f"{self.lines} sum {fmt(lines_sum)} != {self.total} {fmt(total)}"]


@dataclass(frozen=True)
class TotalOf:
    """``parts`` add up to ``total``.

    Every part in ``parts`` must be present (else the rule is skipped); ``optional`` parts count as
    0 when missing. ``included`` parts may instead already be included in the others (prices with
    tax included, as on most till receipts): the rule then also holds when the total matches the
    sum without them.
    """

    parts: Sequence[str]
    total: str
    optional: Sequence[str] = ()
    included: Sequence[str] = ()

    def check(self, data: Mapping[str, Any]) -> list[str]:
        total = number(data.get(self.total))
        values = {name: number(data.get(name)) for name in self.parts}
        if total is None or any(v is None for v in values.values()):
            return []
        for name in self.optional:
            value = number(data.get(name))
            if value is not None:
                values[name] = value
        present = {k: v for k, v in values.items() if v is not None}
        full = sum(present.values())
        if close(full, total, len(present) + 1):
            return []
        without = {k: v for k, v in present.items() if k not in self.included}
        if len(without) < len(present) and close(sum(without.values()), total, len(without) + 1):
            return []
        terms = " + ".join(f"{name} {fmt(value)}" for name, value in present.items())
        return [f"{terms} = {fmt(full)} != {self.total} {fmt(total)}"]


def check_invariants(model: type[BaseModel], data: Mapping[str, Any] | BaseModel) -> list[str]:
    """The failed invariants of ``model`` (its ``invariants`` class variable) on ``data``, one
    message each; empty when they all hold, cannot be checked, or the model declares none."""
    rules: Sequence[Invariant] = getattr(model, "invariants", ())
    values = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    if not isinstance(values, Mapping):
        return []
    return [message for rule in rules for message in rule.check(values)]
