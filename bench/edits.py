"""What the load generator sends: a deterministic mix of edit kinds.

* `leaf`: a sales cell (`quantity` of a random `sale_id`).
* `brand_month`: a brand's month total (`net_amount`), spread down to its sales rows.
* `brand_quarter_like`: a brand's LIKE_QUARTER total (`net_amount`) spread `like` the
  same quarter a year before (its months take that quarter's monthly mix).
* `supplier_total`: a supplier's all-months total (`net_amount`), spread down.
* `undo`: the editor undoes its own last request.
* `paste`: one block edit (`edit_many`) of PASTE_CELLS cells: the brand and family rows'
  month cells of the expanded grid in display order, each brand row then its
  families' rows (so every sales row is spread twice), values within ±10 %.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from bench.server import view_all_rows, view_rows
from protocol.edits import period_months

SUMMARY = "sales_summary_by_product_family"
SPREAD_MONTH = "2024-05"
KINDS = ("leaf", "brand_month", "brand_quarter_like", "supplier_total", "undo", "paste")
LIKE_QUARTER, LIKE_REFERENCE = "2025-Q2", "2024-Q2"
PASTE_CELLS = 5000


@dataclass(frozen=True)
class SpreadTarget:
    condition: dict[str, Any]
    value: float  # the cell's net_amount when the run started


@dataclass(frozen=True)
class Mix:
    """Edit kinds by weight, evenly interleaved (not random), so short runs get the
    intended share of each kind."""

    weights: dict[str, float]
    sales: int
    targets: dict[str, list[SpreadTarget]] = field(default_factory=dict)

    def cycle(self, length: int = 1000) -> list[str]:
        """Smooth weighted round robin over `length` slots."""
        total = sum(self.weights.values())
        current = dict.fromkeys(self.weights, 0.0)
        out: list[str] = []
        for _ in range(length):
            for kind, weight in self.weights.items():
                current[kind] += weight
            pick = max(current, key=lambda k: current[k])
            current[pick] -= total
            out.append(pick)
        return out

    def make(self, kind: str, rng: random.Random) -> dict[str, Any]:
        """The message (everything but its `id`) of one request of `kind`."""
        if kind == "undo":
            return {"type": "undo"}
        if kind == "paste":
            return {"type": "edit_many", "edits": [_spread(t, rng) for t in self.targets["paste"]]}
        if kind == "leaf":
            return {
                "type": "edit",
                "table": "sales",
                "column": "quantity",
                "value": rng.randint(1, 50),
                "condition": {"sale_id": rng.randint(1, self.sales)},
            }
        message = _spread(rng.choice(self.targets[kind]), rng)
        if kind == "brand_quarter_like":
            message["spread"], message["like"] = "like", {"period": LIKE_REFERENCE}
        return message

    def describe(self) -> str:
        total = sum(self.weights.values())
        return ", ".join(f"{k} {100 * w / total:g}%" for k, w in self.weights.items())


def _spread(target: SpreadTarget, rng: random.Random) -> dict[str, Any]:
    return {
        "type": "edit",
        "table": SUMMARY,
        "column": "net_amount",
        "value": round(target.value * rng.uniform(0.9, 1.1), 2),
        "condition": target.condition,
    }


def parse_mix(text: str) -> dict[str, float]:
    """`leaf=0.97,brand_month=0.03` -> weights."""
    weights: dict[str, float] = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        kind = kind.strip()
        if kind not in KINDS:
            raise ValueError(f"unknown edit kind {kind!r}; expected one of {KINDS}")
        weights[kind] = float(weight or 1)
    if not weights or sum(weights.values()) <= 0:
        raise ValueError("the mix needs a positive weight")
    return {k: w for k, w in weights.items() if w > 0}


def spread_targets(base: str, kinds: list[str]) -> dict[str, list[SpreadTarget]]:
    """Valid supplier/brand cells read from the running server's /view_table."""
    targets: dict[str, list[SpreadTarget]] = {}
    if "brand_month" in kinds:
        rows = view_rows(base, SUMMARY, {"level": 1, "month": SPREAD_MONTH})
        targets["brand_month"] = [
            SpreadTarget(
                {"supplier": r["supplier"], "brand": r["brand"], "month": SPREAD_MONTH},
                float(r["net_amount"]),
            )
            for r in rows
            if float(r["net_amount"]) > 0
        ]
    if "brand_quarter_like" in kinds:
        quarter = set(period_months(LIKE_QUARTER))  # type: ignore[arg-type]
        totals: dict[tuple[str, str], float] = {}
        for r in view_all_rows(base, SUMMARY, "level = 1 AND month IS NOT NULL"):
            if r["month"] in quarter:
                key = (r["supplier"], r["brand"])
                totals[key] = totals.get(key, 0.0) + float(r["net_amount"])
        targets["brand_quarter_like"] = [
            SpreadTarget({"supplier": s, "brand": b, "period": LIKE_QUARTER}, value)
            for (s, b), value in sorted(totals.items())
            if value > 0
        ]
    if "supplier_total" in kinds:
        rows = view_rows(base, SUMMARY, {"level": 3, "month": None})
        targets["supplier_total"] = [
            SpreadTarget({"supplier": r["supplier"]}, float(r["net_amount"]))
            for r in rows
            if float(r["net_amount"]) > 0
        ]
    if "paste" in kinds:
        rows = view_all_rows(base, SUMMARY, "level IN (0, 1) AND month IS NOT NULL")
        rows.sort(key=_display_order)
        targets["paste"] = [
            SpreadTarget(
                {k: r[k] for k in ("supplier", "brand", "family", "month")},
                float(r["net_amount"]),
            )
            for r in rows[:PASTE_CELLS]
        ]
    for kind, found in targets.items():
        if not found:
            raise RuntimeError(f"no {kind} cells to spread on")
    return targets


def _display_order(row: dict[str, Any]) -> tuple[Any, ...]:
    """The expanded grid's order: each brand row, then its families' rows; months."""
    return (row["supplier"], row["brand"], -row["level"], row["family"] or "", row["month"])


def build_mix(base: str, weights: dict[str, float], sales: int) -> Mix:
    kinds = [k for k in weights if k not in ("leaf", "undo")]
    return Mix(weights, sales, spread_targets(base, kinds) if kinds else {})
