"""Statistics for the workbook's tables: intervals over seeds, differences, Holm, equivalence.

Every number the workbook reports over seeds goes through this module, so that each chapter
words its conclusions the same way. It needs numpy and scipy only (no torch, nothing from glx).

Quick use
---------
::

    from glx import report

    acc = {"lexicase": [0.635, 0.641, ...], "random": [...], "sgd": [...]}  # one value a seed,
    iv = report.t_interval(acc["lexicase"])   # iv.mean, iv.low, iv.high, iv.half_width, iv.n
    table = report.compare(
        {"lexicase vs random": (acc["lexicase"], acc["random"]),   # same seeds, same order
         "sgd vs lexicase": (acc["sgd"], acc["lexicase"])},
        margin=0.01)                          # in the data's units: 0.01 accuracy = 1 pp
    for row in table:
        print(report.verdict(row, unit="pp", scale=100, decimals=1))
    display(Markdown(report.markdown(table, unit="pp", scale=100, decimals=1)))
    results["comparisons"] = table.to_dicts()  # plain floats and strings, JSON-ready

A row's label ``"X vs Y"`` names its two sides X and Y (A and B below); otherwise pass
``names=("GLS", "SGD")`` (all rows) or ``names={label: (a, b)}``. Each row compares A - B.

The functions
-------------
``t_interval(values, level=0.95) -> Interval``
    Student-t interval of a mean: ``mean, low, high, half_width, sd, n, level``.
``half_width(sd, n, level=0.95)``
    the interval's half width alone, elementwise on arrays (NaN where n < 2); for plots.
``paired(a, b, level=0.95) -> Difference``
    per-seed differences ``a[i] - b[i]`` (``a`` and ``b`` hold the same seeds in the same
    order): mean difference, Student-t interval, ``t``, two-sided ``p``, ``df = n - 1``.
``welch(a, b, level=0.95) -> Difference``
    the same for independent groups (Welch's unequal-variance t): for runs that share no
    seed, e.g. pairs of different seeds. ``Difference`` has ``mean_a, mean_b, mean`` (A - B),
    ``low, high, half_width, se, t, df, p, n_a, n_b, level, paired``.
``holm(p_values) -> np.ndarray``
    Holm's step-down adjusted p-values for the rows of one table (monotone in the order of
    the raw p-values, never below the raw p, capped at 1).
``equivalence(a, b, margin, level=0.95, paired=True) -> Equivalence``
    two one-sided tests (TOST) of ``|mean A - B| < margin``; ``p`` is the larger of the two
    one-sided p-values and ``equivalent`` is ``p < 1 - level``, which is the same as the
    ``2 * level - 1`` interval (90% at level 0.95) ``low, high`` lying inside ``±margin``.
``compare(rows, margin=None, level=0.95, paired=True, names=None) -> Table``
    one difference per row, Holm across the rows, and a TOST per row that has a margin (a
    number for every row, or ``{label: margin}``), its p-values Holm-adjusted across those
    rows too. Each ``Row`` has ``label, name_a, name_b, diff, p_holm, margin, tost,
    tost_p_holm, verdict``.
``verdict(row, unit="", scale=1.0, decimals=None) -> str``
    one sentence with the numbers; ``scale=100, unit="pp"`` turns accuracies into
    percentage points.
``markdown(table, unit="", scale=1.0, decimals=None, note=True) -> str``
    the table in markdown: comparison, means, difference with CI, p, Holm p, TOST p, verdict.

Verdicts
--------
``alpha = 1 - level``. A row's ``verdict`` is

* ``"difference"`` when its Holm-adjusted p < alpha (the sentence says which side is higher);
* else ``"equivalent"`` when a margin was given and the Holm-adjusted TOST p < alpha: the
  difference is shown to lie within ``±margin``;
* else ``"inconclusive"``: the data show neither. A failure to reject is never worded as "no
  difference" or "the same": equivalence needs a margin, stated before looking at the data, in
  the units of the data.

When every seed gives the same difference (standard deviation 0, e.g. two arms that never
differ on a deterministic CPU), the interval has width 0, ``p`` is 1 for a zero difference and
0 otherwise, and the TOST p is 0 or 1 by whether the difference lies inside ``±margin``.

Bad input (empty, a single value, unequal lengths for a paired comparison, NaN or infinity,
something that is not a number, a missing or non-positive margin, a level outside (0, 1)) is a
``ValueError`` that names the argument: ``values``, ``a``, ``b``, ``p_values``, ``margin``,
``level``, ``rows``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "Interval",
    "Difference",
    "Equivalence",
    "Row",
    "Table",
    "VERDICTS",
    "half_width",
    "t_interval",
    "paired",
    "welch",
    "holm",
    "equivalence",
    "compare",
    "verdict",
    "markdown",
]

VERDICTS = ("difference", "equivalent", "inconclusive")


def _student_t() -> Any:
    # scipy.stats takes seconds to import; figures and the CLI import this module without
    # needing it until the first interval
    from scipy import stats

    return stats.t


# ---------------------------------------------------------------------------------------------
# Checking input
# ---------------------------------------------------------------------------------------------


def _real(x: Any) -> bool:
    return (isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)
            and math.isfinite(float(x)))


def _check_level(level: Any, tost: bool = False) -> float:
    if not (_real(level) and 0.0 < float(level) < 1.0):
        raise ValueError(f"level: must be a number in (0, 1), got {level!r}")
    if tost and float(level) <= 0.5:
        raise ValueError(f"level: an equivalence test needs level > 0.5 (its interval is "
                         f"2 * level - 1), got {level!r}")
    return float(level)


def _check_margin(margin: Any) -> float:
    if margin is None:
        raise ValueError("margin: an equivalence test needs a margin (the largest difference "
                         "that counts as no difference, in the units of the data), got None")
    if not (_real(margin) and float(margin) > 0.0):
        raise ValueError(f"margin: must be a positive finite number, got {margin!r}")
    return float(margin)


def _sample(x: Any, name: str, min_n: int = 2) -> np.ndarray:
    """``x`` as a 1-D float64 array of at least ``min_n`` finite values, or a ValueError."""
    if x is None or isinstance(x, (str, bytes, Mapping)):
        raise ValueError(f"{name}: must be a sequence of numbers (one per seed), got {x!r}")
    items = x if hasattr(x, "__len__") else list(x) if isinstance(x, Iterable) else None
    if items is None:
        raise ValueError(f"{name}: must be a sequence of numbers (one per seed), got {x!r}")
    try:
        a = np.asarray(items, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a sequence of numbers, got {x!r}") from None
    if a.ndim != 1:
        raise ValueError(f"{name}: must be one-dimensional (one value per seed), got shape "
                         f"{a.shape}")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        shown = [items[i] for i in bad[:5]] if isinstance(items, (list, tuple)) else a[bad[:5]]
        raise ValueError(f"{name}: must be finite numbers; positions {bad[:5].tolist()} hold "
                         f"{list(shown)!r}")
    if a.size < min_n:
        raise ValueError(f"{name}: needs at least {min_n} values (seeds) for a Student-t "
                         f"interval, got {a.size}")
    return a


# ---------------------------------------------------------------------------------------------
# Intervals and differences
# ---------------------------------------------------------------------------------------------


class Interval(NamedTuple):
    """Student-t interval of a mean: ``mean ± half_width`` = ``[low, high]``."""

    mean: float
    low: float
    high: float
    half_width: float
    sd: float
    n: int
    level: float


class Difference(NamedTuple):
    """A - B with its Student-t interval and two-sided test of 0 (paired or Welch)."""

    mean_a: float
    mean_b: float
    mean: float          # the estimated difference A - B
    low: float
    high: float
    half_width: float
    se: float
    t: float
    df: float
    p: float             # two-sided, against a difference of 0
    n_a: int
    n_b: int
    level: float
    paired: bool


class Equivalence(NamedTuple):
    """Two one-sided tests of ``-margin < A - B < margin`` and their ``2 level - 1`` interval."""

    mean: float          # the estimated difference A - B
    low: float
    high: float
    margin: float
    p: float             # max(p_lower, p_upper)
    p_lower: float       # against A - B <= -margin
    p_upper: float       # against A - B >= +margin
    df: float
    n_a: int
    n_b: int
    level: float
    equivalent: bool
    paired: bool


def half_width(sd: Any, n: Any, level: float = 0.95) -> Any:
    """Half width ``t_{(1+level)/2, n-1} * sd / sqrt(n)`` of the Student-t interval of a mean.

    Elementwise on arrays; NaN where ``n < 2``. Scalars in, a float out.
    """
    level = _check_level(level)
    sd_a, n_a = np.broadcast_arrays(np.asarray(sd, dtype=np.float64),
                                    np.asarray(n, dtype=np.float64))
    out = np.full(sd_a.shape, np.nan)
    ok = n_a >= 2
    out[ok] = _student_t().ppf(0.5 + level / 2.0, n_a[ok] - 1) * sd_a[ok] / np.sqrt(n_a[ok])
    return float(out) if out.ndim == 0 else out


def t_interval(values: Iterable[float], level: float = 0.95) -> Interval:
    """Mean of ``values`` (one per seed, at least 2) and its two-sided Student-t interval."""
    level = _check_level(level)
    a = _sample(values, "values")
    m, sd = float(a.mean()), float(a.std(ddof=1))
    h = float(half_width(sd, a.size, level))
    return Interval(m, m - h, m + h, h, sd, int(a.size), level)


def _two(a: Any, b: Any, is_paired: bool) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """Both samples, the estimate A - B, its standard error and degrees of freedom."""
    xa, xb = _sample(a, "a"), _sample(b, "b")
    if is_paired:
        if xa.size != xb.size:
            raise ValueError(f"b: has {xb.size} values but a has {xa.size}; a paired "
                             "comparison needs one value per seed in each, in the same seed "
                             "order (use welch() for groups that share no seeds)")
        d = xa - xb
        return xa, xb, float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)), d.size - 1.0
    va, vb = xa.var(ddof=1) / xa.size, xb.var(ddof=1) / xb.size
    se = math.sqrt(va + vb)
    # Welch-Satterthwaite; undefined when both groups are constant, where any df gives p 0 or 1
    df = ((va + vb) ** 2 / (va ** 2 / (xa.size - 1) + vb ** 2 / (xb.size - 1)) if se > 0
          else xa.size + xb.size - 2.0)
    return xa, xb, float(xa.mean() - xb.mean()), se, float(df)


def _difference(a: Any, b: Any, level: float, is_paired: bool) -> Difference:
    level = _check_level(level)
    xa, xb, est, se, df = _two(a, b, is_paired)
    if se > 0:
        t = est / se
        p = float(2.0 * _student_t().sf(abs(t), df))
    else:  # every seed gives the same difference: certain, in the limit
        t = 0.0 if est == 0 else math.copysign(math.inf, est)
        p = 1.0 if est == 0 else 0.0
    h = float(_student_t().ppf(0.5 + level / 2.0, df) * se)
    return Difference(float(xa.mean()), float(xb.mean()), est, est - h, est + h, h, se, t, df,
                      p, int(xa.size), int(xb.size), level, is_paired)


def paired(a: Iterable[float], b: Iterable[float], level: float = 0.95) -> Difference:
    """Paired difference A - B over seeds: ``a[i]`` and ``b[i]`` come from the same seed."""
    return _difference(a, b, level, True)


def welch(a: Iterable[float], b: Iterable[float], level: float = 0.95) -> Difference:
    """Difference of means A - B of independent groups (Welch's unequal-variance t)."""
    return _difference(a, b, level, False)


def holm(p_values: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order given.

    With raw p sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted value of the i-th is
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``. A row is a difference at level alpha, with the
    family-wise error rate of the table held at alpha, when its adjusted p < alpha.
    """
    p = _sample(p_values, "p_values", min_n=1)
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"p_values: must lie in [0, 1], got {p[(p < 0) | (p > 1)][:5].tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out


def equivalence(a: Iterable[float], b: Iterable[float], margin: float, level: float = 0.95,
                paired: bool = True) -> Equivalence:
    """Two one-sided tests (TOST) that A - B lies within ``±margin`` (units of the data).

    ``p_lower`` tests the null ``A - B <= -margin``, ``p_upper`` the null ``A - B >= margin``;
    equivalence is shown at ``alpha = 1 - level`` when both reject, i.e. ``p = max < alpha``,
    i.e. the ``1 - 2 alpha`` interval ``[low, high]`` lies inside ``(-margin, margin)``.
    ``paired=False`` uses Welch's t for independent groups.
    """
    margin = _check_margin(margin)
    level = _check_level(level, tost=True)
    xa, xb, est, se, df = _two(a, b, paired)
    if se > 0:
        p_lower = float(_student_t().sf((est + margin) / se, df))
        p_upper = float(_student_t().cdf((est - margin) / se, df))
    else:
        p_lower = 0.0 if est > -margin else 1.0
        p_upper = 0.0 if est < margin else 1.0
    alpha = 1.0 - level
    h = float(_student_t().ppf(1.0 - alpha, df) * se)
    p = max(p_lower, p_upper)
    return Equivalence(est, est - h, est + h, margin, p, p_lower, p_upper, df, int(xa.size),
                       int(xb.size), level, bool(p < alpha), paired)


# ---------------------------------------------------------------------------------------------
# Tables of comparisons
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One comparison A - B of a :class:`Table`."""

    label: str
    name_a: str
    name_b: str
    diff: Difference
    p_holm: float
    margin: float | None
    tost: Equivalence | None
    tost_p_holm: float | None
    verdict: str                      # one of VERDICTS

    @property
    def n(self) -> int:
        """Seeds (pairs) for a paired row; all runs of both groups for a Welch row."""
        return self.diff.n_a if self.diff.paired else self.diff.n_a + self.diff.n_b

    def to_dict(self) -> dict[str, Any]:
        d, e = self.diff, self.tost
        out: dict[str, Any] = {
            "label": self.label, "a": self.name_a, "b": self.name_b, "verdict": self.verdict,
            "mean_a": d.mean_a, "mean_b": d.mean_b, "diff": d.mean, "low": d.low,
            "high": d.high, "level": d.level, "t": d.t, "df": d.df, "p": d.p,
            "p_holm": self.p_holm, "n_a": d.n_a, "n_b": d.n_b, "paired": d.paired,
            "margin": self.margin, "tost_p": None, "tost_p_holm": self.tost_p_holm,
            "tost_low": None, "tost_high": None}
        if e is not None:
            out.update(tost_p=e.p, tost_low=e.low, tost_high=e.high)
        return out


@dataclass(frozen=True)
class Table:
    """The rows of one :func:`compare`, with Holm's correction across them."""

    rows: tuple[Row, ...]
    level: float
    paired: bool

    @property
    def alpha(self) -> float:
        return 1.0 - self.level

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, label: str) -> Row:
        for r in self.rows:
            if r.label == label:
                return r
        raise KeyError(f"label={label!r}: no such row; rows are {[r.label for r in self.rows]}")

    def to_dicts(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.rows]


def _names(label: str, names: Any) -> tuple[str, str]:
    if isinstance(names, Mapping):
        names = names.get(label)
    if names is None:
        a, sep, b = label.partition(" vs ")
        return (a.strip(), b.strip()) if sep and a.strip() and b.strip() else ("A", "B")
    if not (isinstance(names, (tuple, list)) and len(names) == 2):
        raise ValueError(f"names: must be a pair (name_a, name_b) or a mapping label -> pair, "
                         f"got {names!r} for row {label!r}")
    return str(names[0]), str(names[1])


def compare(rows: Mapping[str, tuple[Iterable[float], Iterable[float]]],
            margin: float | Mapping[str, float] | None = None, level: float = 0.95,
            paired: bool = True, names: Any = None) -> Table:
    """One comparison A - B per row, Holm across the rows, TOST where a margin is given.

    ``rows`` maps a label to ``(a, b)``, one value per seed each (same seeds in the same order
    when ``paired``; Welch's t otherwise). ``margin`` is one number for every row, a mapping
    ``label -> margin`` (rows left out get no equivalence test), or None. See the module
    docstring for the verdict rules.
    """
    level = _check_level(level)
    if not isinstance(rows, Mapping) or not rows:
        raise ValueError(f"rows: must be a non-empty mapping label -> (a, b), got {rows!r}")
    if isinstance(margin, Mapping):
        unknown = [k for k in margin if k not in rows]
        if unknown:
            raise ValueError(f"margin: has labels {unknown!r} that are not rows "
                             f"({list(rows)!r})")
        margins = {k: _check_margin(margin.get(k)) if k in margin else None for k in rows}
    else:
        m = None if margin is None else _check_margin(margin)
        margins = {k: m for k in rows}

    diffs, tosts = {}, {}
    for label, pair in rows.items():
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"rows[{label!r}]: must be a pair (a, b) of per-seed values, "
                             f"got {pair!r}")
        try:
            diffs[label] = _difference(pair[0], pair[1], level, paired)
            if margins[label] is not None:
                tosts[label] = equivalence(pair[0], pair[1], margins[label], level, paired)
        except ValueError as err:
            raise ValueError(f"rows[{label!r}]: {err}") from None

    labels = list(rows)
    p_holm = dict(zip(labels, holm([diffs[k].p for k in labels]).tolist(), strict=True))
    tost_labels = [k for k in labels if k in tosts]
    tost_holm = (dict(zip(tost_labels, holm([tosts[k].p for k in tost_labels]).tolist(),
                          strict=True)) if tost_labels else {})
    alpha = 1.0 - level
    out = []
    for k in labels:
        if p_holm[k] < alpha:
            v = "difference"
        elif k in tosts and tost_holm[k] < alpha:
            v = "equivalent"
        else:
            v = "inconclusive"
        a, b = _names(k, names)
        out.append(Row(str(k), a, b, diffs[k], p_holm[k], margins[k], tosts.get(k),
                       tost_holm.get(k), v))
    return Table(tuple(out), level, paired)


# ---------------------------------------------------------------------------------------------
# Words
# ---------------------------------------------------------------------------------------------


def _num(x: float, scale: float, decimals: int | None, sign: bool = True) -> str:
    """``x * scale`` with a sign; ``decimals`` fixed, or 3 significant digits."""
    v = x * scale
    if not math.isfinite(v):
        return str(v)
    s = "+" if sign else ""
    if decimals is not None:
        return f"{v:{s}.{decimals}f}"
    return f"{v:{s}.0f}" if abs(v) >= 1000 else f"{v:{s}.3g}"


def _p(p: float, bare: bool = False) -> str:
    """A p-value as ``"= 0.012"`` or ``"< 0.001"`` (``bare``: without the ``"= "``)."""
    if p < 0.001:
        return "< 0.001"
    return f"{p:.2g}" if bare else f"= {p:.2g}"


def _seeds(row: Row) -> str:
    d = row.diff
    return f"{d.n_a} seeds" if d.paired else f"Welch, {d.n_a} and {d.n_b} runs"


def _check_words(unit: Any, scale: Any, decimals: Any) -> None:
    if not isinstance(unit, str):
        raise ValueError(f"unit: must be a string, got {unit!r}")
    if not (_real(scale) and scale != 0):
        raise ValueError(f"scale: must be a non-zero finite number, got {scale!r}")
    if decimals is not None and not (isinstance(decimals, int) and 0 <= decimals <= 12):
        raise ValueError(f"decimals: must be None or an int in [0, 12], got {decimals!r}")


def verdict(row: Row, unit: str = "", scale: float = 1.0, decimals: int | None = None) -> str:
    """One sentence stating ``row``'s verdict with its numbers.

    ``unit`` follows every number (``"pp"`` reads ``"+1.2 pp"``); ``scale`` multiplies every
    difference, interval and margin (100 turns accuracies into percentage points);
    ``decimals`` fixes the decimals (default: 3 significant digits).
    """
    if not isinstance(row, Row):
        raise ValueError(f"row: must be a Row of a compare() table, got {type(row).__name__}")
    _check_words(unit, scale, decimals)
    u = f" {unit}" if unit else ""
    d, e, A, B = row.diff, row.tost, row.name_a, row.name_b

    def n(x: float, sign: bool = True) -> str:
        return _num(x, scale, decimals, sign)

    lvl = f"{100 * d.level:g}%"
    stated = (f"{A} − {B} = {n(d.mean)}{u} ({lvl} CI {n(d.low)} to {n(d.high)}, "
              f"Holm p {_p(row.p_holm)}, {_seeds(row)})")
    margin = "" if row.margin is None else f"±{n(row.margin, sign=False)}{u}"
    if row.verdict == "difference":
        side = "higher" if d.mean > 0 else "lower"
        s = f"{A} is {side} than {B}: {stated}"
        if e is not None and row.tost_p_holm is not None and row.tost_p_holm < 1 - d.level:
            s += f"; the difference is nevertheless within {margin} (TOST Holm p " \
                 f"{_p(row.tost_p_holm)})"
        return s
    if row.verdict == "equivalent":
        assert e is not None and row.tost_p_holm is not None
        return (f"{A} and {B} are equivalent within {margin}: {A} − {B} = {n(e.mean)}{u} "
                f"({100 * (2 * e.level - 1):g}% CI {n(e.low)} to {n(e.high)}, TOST Holm p "
                f"{_p(row.tost_p_holm)}, {_seeds(row)})")
    if e is None:
        tail = ("no equivalence margin was set, so this is not evidence that they are the "
                "same")
    else:
        tail = (f"equivalence within {margin} is not shown either (TOST Holm p "
                f"{_p(row.tost_p_holm if row.tost_p_holm is not None else e.p)})")
    return f"inconclusive: {stated}; {tail}"


def markdown(table: Table, unit: str = "", scale: float = 1.0, decimals: int | None = None,
             note: bool = True) -> str:
    """``table`` as a markdown table; ``unit``/``scale``/``decimals`` as in :func:`verdict`.

    Columns: comparison, mean of A, mean of B, A - B with its interval, p, Holm p, TOST p
    (Holm-adjusted, with the margin), verdict. ``note`` adds a line saying how to read it.
    """
    if not isinstance(table, Table):
        raise ValueError(f"table: must be a Table from compare(), got {type(table).__name__}")
    _check_words(unit, scale, decimals)
    u = f" {unit}" if unit else ""
    lvl = f"{100 * table.level:g}%"
    lines = [f"| comparison (A vs B) | mean A | mean B | A − B{',' if unit else ''}{u} ({lvl} CI) "
             f"| p | Holm p | "
             f"TOST Holm p (margin) | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table:
        d = r.diff
        label = r.label if r.label == f"{r.name_a} vs {r.name_b}" else \
            f"{r.label} ({r.name_a} vs {r.name_b})"
        ci = (f"{_num(d.mean, scale, decimals)} [{_num(d.low, scale, decimals)}, "
              f"{_num(d.high, scale, decimals)}]")
        margin = "" if r.margin is None else f"±{_num(r.margin, scale, decimals, False)}"
        tost = "—" if r.tost_p_holm is None else f"{_p(r.tost_p_holm, bare=True)} ({margin})"
        word = {"difference": f"{r.name_a} {'higher' if d.mean > 0 else 'lower'}",
                "equivalent": f"equivalent within {margin}{u}",
                "inconclusive": "inconclusive"}[r.verdict]
        lines.append(f"| {label} | {_num(d.mean_a, scale, decimals, False)} | "
                     f"{_num(d.mean_b, scale, decimals, False)} | {ci} | {_p(d.p, bare=True)} "
                     f"| {_p(r.p_holm, bare=True)} | {tost} | {word} |")
    if note:
        how = "paired by seed" if table.paired else "independent groups (Welch)"
        rows = f"{len(table)} row{'s' if len(table) != 1 else ''}"
        lines.append("")
        lines.append(f"A − B {how}, Student-t {lvl} intervals; Holm's correction across the "
                     f"{rows}. \"inconclusive\" means neither a difference nor equivalence "
                     "within the margin was shown, not that A and B are the same.")
    return "\n".join(lines)
