"""Values that do not exist, and what tinygrok records for them: one place for every quantity that divides by a
defect, a norm or a count that can be exactly zero.

In float32 two gradient steps can commute exactly: theta - eta g rounds to theta, the defect vector delta is 0 and
D = 0 (docs/paper.md §6.6; the reference stores rho = NaN there). D = 0 is a measurement. A ratio over ||delta||, or
over any norm that is 0, is not: it has no value. Such a value is undefined: None in Python, null in JSON, never
0, inf or NaN; medians and fits leave it out; and the record says which values are undefined and why (WHY).

Two quantities the paper defines at zero themselves, so they are never undefined: the onset rule's baseline is
max(median of the first three D, 0.1) (§7.1), so growth over it is max D / 0.1 at worst; and D's own normaliser
carries the reference's + 1e-12.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

ZERO_DEFECT = "the median defect is exactly 0: there is no defect vector to project"
WHY = {  # a record's key, by its ending -> why it can be undefined
    "_proj": ZERO_DEFECT,
    "_random_ratio": ZERO_DEFECT + " (or none of it lies in the random bases)",
    "_rho": "every defect sample is exactly 0: no direction to measure",
    "alignment_ratio": "the step or every defect vector is exactly 0: no angle between them",
    **dict.fromkeys(("weight_svd", "pca", "random"), ZERO_DEFECT),  # the dimension sweep's proj/full per basis
}


def defined(value) -> bool:
    """Whether a value exists: not None (and not NaN, as run directories written before this module hold)."""
    return value is not None and value == value


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator; undefined (None) where the denominator is 0 or either side is undefined."""
    if not (defined(numerator) and defined(denominator)) or denominator == 0:
        return None
    return numerator / denominator


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are defined; None if none is."""
    kept = [v for v in values if defined(v)]
    return statistics.median(kept) if kept else None


def reason(key: str) -> str:
    """Why the quantity under `key` can be undefined (WHY, by the key's ending)."""
    why = [text for ending, text in WHY.items() if key.endswith(ending)]
    return why[0] if why else "not a number here (no rule in undefined.WHY says when it may be undefined)"


def tally(rows: list[dict]) -> dict[str, dict]:
    """Over records: for each quantity undefined in any of them, in how many, of the records that have it, and
    why. {key: {"records": n, "of": m, "why": text}}; empty when every value is defined."""
    keys = dict.fromkeys(key for row in rows for key, value in row.items() if not defined(value))
    return {
        key: {
            "records": sum(not defined(row[key]) for row in rows if key in row),
            "of": sum(key in row for row in rows),
            "why": reason(key),
        }
        for key in keys
    }


def grouped(counts: dict[str, dict]) -> list[tuple[str, dict]]:
    """The tally's quantities that share a count and a reason, named together: [("a, b", {"records", "of", "why"})]."""
    groups: dict[tuple, list[str]] = {}
    for key, c in counts.items():
        groups.setdefault((c["records"], c["of"], c["why"]), []).append(key)
    return [(", ".join(keys), {"records": n, "of": m, "why": why}) for (n, m, why), keys in groups.items()]


def describe(counts: dict[str, dict]) -> list[str]:
    """One line per group of undefined quantities, as the CLI prints them."""
    return [f"{keys}: undefined in {c['records']} of {c['of']} records ({c['why']})" for keys, c in grouped(counts)]
