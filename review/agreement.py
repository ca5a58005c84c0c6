"""Inter-rater agreement over labels {item: {reviewer: value}}: pure, no database.

The formulas are the maintained libraries': `krippendorff` for α, statsmodels' inter_rater for
Cohen's and Fleiss' κ (scikit-learn has no Fleiss' κ; statsmodels has both kappas, tested against
the published examples like ours in tests/review/test_agreement.py). This module only arranges
the labels into the tables those functions take and says which figure fits which data.

Only items with two or more labels count: an item one reviewer labelled cannot agree or differ.
"""

from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Literal

import krippendorff
import numpy as np

Level = Literal["nominal", "interval"]
Labels = Mapping[Hashable, Mapping[Hashable, Hashable]]

# Landis & Koch (1977), "The measurement of observer agreement for categorical data": the
# customary words for a kappa; used for α too so that every figure reads the same way.
_READINGS = [
    (0.80, "almost perfect"),
    (0.60, "substantial"),
    (0.40, "moderate"),
    (0.20, "fair"),
    (0.0, "slight"),
]


def reading_of(value: float | None) -> str:
    """Landis & Koch's word for a kappa-like figure: above 0.80 "almost perfect", above 0.60
    "substantial", above 0.40 "moderate", above 0.20 "fair", from 0 "slight", below 0 "poor"."""
    if value is None:
        return "not defined"
    for floor, word in _READINGS:
        if value > floor or (floor == 0.0 and value >= 0.0):
            return word
    return "poor"


@dataclass(frozen=True)
class Figure:
    key: str  # percent_agreement, cohens_kappa, fleiss_kappa, krippendorff_alpha
    name: str  # what the page shows: "Krippendorff's α (nominal)"
    value: float | None  # None when the figure is not defined for these labels (see `note`)
    items: int  # the items it is computed on
    reading: str
    note: str = ""


@dataclass(frozen=True)
class Agreement:
    level: Level
    items: int  # items with two or more labels
    reviewers: int  # distinct reviewers who labelled those items
    labels: int  # labels on those items
    figures: list[Figure] = field(default_factory=list)

    def figure(self, key: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key), None)


def agreement(labels: Labels, level: Level) -> Agreement:
    """Every figure that fits these labels.

    - percent agreement: for each item, the share of its pairs of reviewers that gave the same
      value (n labels make n(n-1)/2 pairs; numbers agree only when equal), averaged over the
      items with equal weight. With a constant number of labels it is Fleiss' P̄.
    - Cohen's κ when exactly two reviewers labelled the items (then both labelled each of them):
      unweighted for categories, with quadratic weights on the numbers themselves for numbers
      (the usual kappa for an interval scale).
    - Fleiss' κ when three or more reviewers did, categories only. Fleiss' κ needs the same
      number of labels on every item: it is computed on the items with the most common number of
      labels (the larger number on a tie), and the figure says how many items that is.
    - Krippendorff's α at this level (nominal for categories and thumbs, interval for numbers),
      which allows missing labels, so it uses every item with two or more.
    A kappa or α is None, with a note, when chance agreement is total (every label the same
    value): the figure is then 0/0.
    """
    if level not in ("nominal", "interval"):
        raise ValueError(f"Unknown level of measurement: {level!r}")
    used = {item: dict(by) for item, by in labels.items() if len(by) >= 2}
    reviewers = {reviewer for by in used.values() for reviewer in by}
    result = Agreement(
        level=level,
        items=len(used),
        reviewers=len(reviewers),
        labels=sum(len(by) for by in used.values()),
    )
    if not used:
        return result
    domain = sorted({value for by in used.values() for value in by.values()}, key=_order_key)
    code = {value: i for i, value in enumerate(domain)}
    figures = result.figures
    figures.append(_percent_agreement(used))
    if len(reviewers) == 2:
        figures.append(_cohens_kappa(used, sorted(reviewers, key=str), code, domain, level))
    elif level == "nominal":
        figures.append(_fleiss_kappa(used, code))
    figures.append(_krippendorff_alpha(used, code, domain, level))
    return result


def _order_key(value):
    # Numbers by size (the interval level needs them ordered); categories by their text.
    return (0, float(value), "") if isinstance(value, (int, float)) else (1, 0.0, str(value))


def _percent_agreement(used: dict) -> Figure:
    shares = []
    for by in used.values():
        pairs = list(combinations(by.values(), 2))
        shares.append(sum(a == b for a, b in pairs) / len(pairs))
    value = float(np.mean(shares))
    return Figure(
        key="percent_agreement",
        name="Percent agreement",
        value=value,
        items=len(used),
        reading=f"{value * 100:.0f} % of pairs of reviewers gave the same answer",
    )


def _cohens_kappa(used, pair, code, domain, level: Level) -> Figure:
    from statsmodels.stats.inter_rater import cohens_kappa  # about 1 s to import: load it late

    first, second = pair
    table = np.zeros((len(domain), len(domain)))
    for by in used.values():
        table[code[by[first]], code[by[second]]] += 1
    if level == "interval":
        name = "Cohen's κ (quadratic weights)"
        kwargs = {"weights": np.asarray(domain, dtype=float), "wt": "quadratic"}
    else:
        name, kwargs = "Cohen's κ", {}
    value = _defined(lambda: cohens_kappa(table, return_results=False, **kwargs))
    return _kappa_figure("cohens_kappa", name, value, len(used))


def _fleiss_kappa(used, code) -> Figure:
    from statsmodels.stats.inter_rater import fleiss_kappa

    counts = Counter(len(by) for by in used.values())
    modal = max(counts, key=lambda n: (counts[n], n))
    kept = [by for by in used.values() if len(by) == modal]
    table = np.zeros((len(kept), len(code)))
    for row, by in enumerate(kept):
        for value in by.values():
            table[row, code[value]] += 1
    value = _defined(lambda: fleiss_kappa(table, method="fleiss"))
    note = (
        f"on the {len(kept)} items with {modal} labels; Fleiss' κ needs the same number on each"
        if len(counts) > 1
        else ""
    )
    return _kappa_figure("fleiss_kappa", "Fleiss' κ", value, len(kept), note)


def _krippendorff_alpha(used, code, domain, level: Level) -> Figure:
    # value_counts (items × values) rather than a reviewers × items matrix: α depends only on
    # how many times each item got each value, and this stays small with many reviewers.
    counts = np.zeros((len(used), len(domain)))
    for row, by in enumerate(used.values()):
        for value in by.values():
            counts[row, code[value]] += 1
    if len(domain) < 2:
        value = None
    else:
        value_domain = np.asarray(domain, dtype=float) if level == "interval" else None
        value = _defined(
            lambda: krippendorff.alpha(
                value_counts=counts,
                value_domain=value_domain,
                level_of_measurement=level,
            )
        )
    return _kappa_figure("krippendorff_alpha", f"Krippendorff's α ({level})", value, len(used))


def _defined(compute) -> float | None:
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(compute())
    return value if np.isfinite(value) else None


def _kappa_figure(key, name, value, items, note="") -> Figure:
    if value is None:
        note = "; ".join(
            filter(None, [note, "every label has the same value, so chance agreement is total"])
        )
    return Figure(
        key=key, name=name, value=value, items=items, reading=reading_of(value), note=note
    )
