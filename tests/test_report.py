"""Tests of glx.report: intervals, paired/Welch differences, Holm, TOST, verdicts, tables.

Every statistic is checked against scipy's own tests (scipy.stats.ttest_rel, ttest_1samp,
ttest_ind, t.ppf), Holm against a hand-computed example and its defining properties.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from glx import report as R

RNG = np.random.default_rng(12)
A5 = [0.635, 0.641, 0.628, 0.650, 0.639]
B5 = [0.630, 0.629, 0.627, 0.640, 0.631]


def samples(n: int, shift: float = 0.0, sd: float = 1.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, sd, n)


# Intervals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n,level", [(2, 0.95), (5, 0.95), (5, 0.9), (12, 0.99)])
def test_t_interval_matches_scipy(n, level):
    x = samples(n, 3.0, 2.0, seed=n)
    iv = R.t_interval(x, level)
    lo, hi = stats.t.interval(level, n - 1, loc=x.mean(), scale=stats.sem(x))
    assert (iv.mean, iv.low, iv.high) == pytest.approx((x.mean(), lo, hi), rel=1e-12)
    assert iv.half_width == pytest.approx(stats.t.ppf(0.5 + level / 2, n - 1) * stats.sem(x))
    assert iv.sd == pytest.approx(x.std(ddof=1)) and iv.n == n and iv.level == level


def test_half_width_is_elementwise_and_nan_below_two():
    sd, n = np.array([1.0, 2.0, 0.5]), np.array([1, 4, 10])
    h = R.half_width(sd, n, 0.95)
    assert math.isnan(h[0])
    assert h[1] == pytest.approx(stats.t.ppf(0.975, 3) * 2.0 / 2.0)
    assert h[2] == pytest.approx(stats.t.ppf(0.975, 9) * 0.5 / math.sqrt(10))
    assert isinstance(R.half_width(1.0, 4), float)


# Differences ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n,shift", [(3, 0.0), (5, 0.4), (10, -1.0)])
def test_paired_matches_ttest_rel(n, shift):
    a = samples(n, 0.0, 1.0, seed=n)
    b = a + samples(n, -shift, 0.5, seed=n + 100)
    d = R.paired(a, b)
    ref = stats.ttest_rel(a, b)
    assert d.t == pytest.approx(ref.statistic, rel=1e-10)
    assert d.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert d.df == n - 1 and d.n_a == d.n_b == n and d.paired
    ci = ref.confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert d.mean == pytest.approx(np.mean(a - b)) and d.mean_a == pytest.approx(a.mean())


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=2, max_size=12),
       st.floats(0.5, 50.0))
def test_paired_and_tost_agree_with_scipy_on_any_data(pairs, margin):
    a, b = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    d = a - b
    if np.std(d) < 1e-6 * max(1.0, np.abs(d).max()):
        return  # (near-)constant differences: scipy's t is unstable; see the exact test above
    ref = stats.ttest_rel(a, b)
    got = R.paired(a, b)
    assert got.p == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-12)
    e = R.equivalence(a, b, margin)
    lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
    assert e.p == pytest.approx(max(lower, upper), rel=1e-7, abs=1e-12)


def test_welch_matches_ttest_ind():
    a, b = samples(5, 1.0, 1.0, seed=1), samples(7, 0.0, 3.0, seed=2)
    d = R.welch(a, b, level=0.9)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert d.t == pytest.approx(ref.statistic, rel=1e-10)
    assert d.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert d.df == pytest.approx(ref.df, rel=1e-10)
    ci = ref.confidence_interval(0.9)
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert not d.paired and (d.n_a, d.n_b) == (5, 7)


def test_constant_differences_are_certain():
    a = [1.0, 2.0, 3.0]
    same = R.paired(a, a)
    assert (same.mean, same.half_width, same.p) == (0.0, 0.0, 1.0)
    shifted = R.paired([x + 0.5 for x in a], a)
    assert shifted.p == 0.0 and shifted.t == math.inf and shifted.low == shifted.high == 0.5
    e = R.equivalence(a, a, margin=0.1)
    assert e.equivalent and e.p == 0.0
    assert not R.equivalence([x + 0.5 for x in a], a, margin=0.1).equivalent


# Holm ----------------------------------------------------------------------------------------


def test_holm_hand_computed():
    # sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> 0.06)
    p = [0.03, 0.01, 0.04, 0.02]
    np.testing.assert_allclose(R.holm(p), [0.06, 0.04, 0.06, 0.06])
    np.testing.assert_allclose(R.holm([0.5, 0.4]), [0.8, 0.8])
    np.testing.assert_allclose(R.holm([0.9, 0.6, 0.01]), [1.0, 1.0, 0.03])
    assert R.holm([0.2]).tolist() == [0.2]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20))
def test_holm_properties(p):
    adj = R.holm(p)
    raw = np.asarray(p)
    assert adj.shape == raw.shape
    assert (adj >= raw - 1e-15).all() and (adj <= 1.0).all()
    order = np.argsort(raw, kind="stable")
    assert (np.diff(adj[order]) >= 0).all()
    # Holm is never stricter than Bonferroni, never looser than no correction
    assert (adj <= np.minimum(1.0, raw * raw.size) + 1e-15).all()


# Equivalence ---------------------------------------------------------------------------------


@pytest.mark.parametrize("paired_shift,margin", [(0.05, 0.5), (0.3, 0.5), (-0.2, 0.25),
                                                 (0.0, 2.0)])
def test_tost_is_two_one_sided_ttests(paired_shift, margin):
    a = samples(8, 0.0, 1.0, seed=3)
    b = a - paired_shift + samples(8, 0.0, 0.2, seed=4)
    d = a - b
    e = R.equivalence(a, b, margin=margin)
    lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
    assert e.p_lower == pytest.approx(lower, rel=1e-10)
    assert e.p_upper == pytest.approx(upper, rel=1e-10)
    assert e.p == pytest.approx(max(lower, upper), rel=1e-10)
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.90)
    assert (e.low, e.high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    # the p-value and the 90% interval give the same decision
    assert e.equivalent == (e.p < 0.05) == (-margin < e.low and e.high < margin)


def test_tost_welch_matches_shifted_ttest_ind():
    a, b = samples(6, 0.1, 0.3, seed=5), samples(9, 0.0, 0.6, seed=6)
    e = R.equivalence(a, b, margin=0.8, paired=False)
    lower = stats.ttest_ind(a + 0.8, b, equal_var=False, alternative="greater").pvalue
    upper = stats.ttest_ind(a - 0.8, b, equal_var=False, alternative="less").pvalue
    assert (e.p_lower, e.p_upper) == pytest.approx((lower, upper), rel=1e-10)
    assert e.equivalent == (max(lower, upper) < 0.05) and not e.paired


def test_tost_can_show_equivalence_and_can_fail_to():
    a = samples(20, 0.0, 1.0, seed=7)
    close = R.equivalence(a, a + samples(20, 0.0, 0.05, seed=8), margin=0.1)
    assert close.equivalent
    noisy = R.equivalence(a[:3], a[:3] + samples(3, 0.0, 0.5, seed=9), margin=0.1)
    assert not noisy.equivalent


# compare / verdict / markdown ----------------------------------------------------------------


def three_outcomes():
    base = samples(6, 0.6, 0.02, seed=10)
    rows = {
        "sgd vs lexicase": (base + 0.05 + samples(6, 0, 0.002, seed=11), base),
        "random vs lexicase": (base + samples(6, 0, 0.001, seed=12), base),
        "tournament vs lexicase": (base + samples(6, 0, 0.05, seed=13), base),
    }
    return R.compare(rows, margin=0.01)


def test_compare_assigns_each_verdict_with_holm_and_tost():
    t = three_outcomes()
    assert [r.verdict for r in t] == ["difference", "equivalent", "inconclusive"]
    raw = [r.diff.p for r in t]
    np.testing.assert_allclose([r.p_holm for r in t], R.holm(raw))
    np.testing.assert_allclose([r.tost_p_holm for r in t], R.holm([r.tost.p for r in t]))
    r = t["random vs lexicase"]
    assert (r.name_a, r.name_b, r.margin) == ("random", "lexicase", 0.01)
    assert r.tost.equivalent and r.p_holm >= 0.05
    assert len(t) == 3 and t.alpha == pytest.approx(0.05)
    json.dumps(t.to_dicts())  # JSON-ready
    with pytest.raises(KeyError, match="nope"):
        t["nope"]


def test_holm_can_overturn_a_raw_difference():
    # each row alone just below 0.05; across 5 rows Holm keeps none
    rows = {}
    for i in range(5):
        a = samples(6, 0.0, 1.0, seed=20 + i)
        d = samples(6, 0.0, 1.0, seed=40 + i)
        d = d - d.mean() + 1.0  # mean 1, then scale sd so that p lands near 0.04
        target_t = stats.t.ppf(1 - 0.04 / 2, 5)
        d = 1.0 + (d - 1.0) * (1.0 / (target_t / math.sqrt(6))) / d.std(ddof=1)
        rows[f"arm{i} vs ref"] = (a + d, a)
    t = R.compare(rows)
    assert all(r.diff.p < 0.05 for r in t)
    assert all(r.verdict == "inconclusive" for r in t)
    alone = R.compare({"arm0 vs ref": rows["arm0 vs ref"]})
    assert alone.rows[0].verdict == "difference"


def test_margin_per_row_and_names():
    a, b = samples(5, 1.0, 0.1, seed=30), samples(5, 1.0, 0.1, seed=31)
    t = R.compare({"rank": (a, b), "cka": (a, b)}, margin={"cka": 1.0}, names=("GLS", "SGD"))
    assert t["rank"].tost is None and t["cka"].tost is not None
    assert (t["rank"].name_a, t["rank"].name_b) == ("GLS", "SGD")
    t2 = R.compare({"x": (a, b)}, names={"x": ("P", "Q")})
    assert (t2["x"].name_a, t2["x"].name_b) == ("P", "Q")
    assert (R.compare({"x": (a, b)})["x"].name_a) == "A"
    w = R.compare({"x": (a, b[:4])}, paired=False)
    assert not w["x"].diff.paired and w["x"].n == 9


def test_verdict_sentences():
    t = three_outcomes()
    diff, eq, inc = t.rows
    s = R.verdict(diff, unit="pp", scale=100, decimals=1)
    d = diff.diff
    assert s.startswith("sgd is higher than lexicase: sgd − lexicase = ")
    assert f"{100 * d.mean:+.1f} pp (95% CI {100 * d.low:+.1f} to {100 * d.high:+.1f}" in s
    assert "Holm p" in s and "6 seeds" in s
    s = R.verdict(eq, unit="pp", scale=100, decimals=1)
    e = eq.tost
    assert s.startswith("random and lexicase are equivalent within ±1.0 pp: ")
    assert f"90% CI {100 * e.low:+.1f} to {100 * e.high:+.1f}" in s and "TOST Holm p" in s
    s = R.verdict(inc, unit="pp", scale=100, decimals=1)
    assert s.startswith("inconclusive: tournament − lexicase = ")
    assert "equivalence within ±1.0 pp is not shown either" in s
    assert "no difference" not in s and "same" not in s
    plain = R.compare({"a vs b": (A5, B5[::-1])})
    s = R.verdict(plain.rows[0])
    assert plain.rows[0].verdict == "inconclusive"
    assert "no equivalence margin was set" in s


def test_verdict_lower_and_welch_wording():
    t = R.compare({"x vs y": (np.array(B5) - 0.05, B5)}, paired=False)
    s = R.verdict(t.rows[0], unit="pp", scale=100, decimals=1)
    assert s.startswith("x is lower than y: x − y = -5.0 pp") and "Welch, 5 and 5 runs" in s


def test_markdown_table():
    t = three_outcomes()
    md = R.markdown(t, unit="pp", scale=100, decimals=1)
    lines = md.splitlines()
    assert lines[0].startswith("| comparison (A vs B) | mean A | mean B | A − B, pp (95% CI) | p | Holm p")
    body = [ln for ln in lines[2:] if ln.startswith("|")]
    assert len(body) == 3 and all(ln.count("|") == 9 for ln in body)
    assert "sgd higher" in body[0] and "equivalent within ±1.0 pp" in body[1]
    assert "inconclusive" in body[2] and "not that A and B are the same" in md
    d = t.rows[0].diff
    assert f"{100 * d.mean:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]" in body[0]
    assert "(A vs B)" not in R.markdown(t, note=False).splitlines()[-1]


# Bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("values,match", [
    ([], "values.*at least 2.*got 0"),
    ([1.0], "values.*at least 2.*got 1"),
    ([1.0, float("nan")], r"values.*finite.*\[1\]"),
    ([1.0, math.inf, 2.0], "values.*finite"),
    ([1.0, None], "values.*None"),
    (["a", "b"], "values.*numbers"),
    ("12", "values.*sequence"),
    (None, "values.*sequence"),
    ([[1.0, 2.0], [3.0, 4.0]], "values.*one-dimensional"),
])
def test_bad_values_name_the_argument(values, match):
    with pytest.raises(ValueError, match=match):
        R.t_interval(values)


def test_bad_pairs_name_the_argument():
    with pytest.raises(ValueError, match="b: has 4 values but a has 5"):
        R.paired(A5, B5[:4])
    with pytest.raises(ValueError, match="^a:.*at least 2"):
        R.paired([1.0], [2.0])
    with pytest.raises(ValueError, match="^b:.*finite"):
        R.welch(A5, [1.0, float("nan")])
    with pytest.raises(ValueError, match="level.*1.5"):
        R.paired(A5, B5, level=1.5)
    with pytest.raises(ValueError, match="level.*True"):
        R.t_interval(A5, level=True)


@pytest.mark.parametrize("margin", [None, 0, 0.0, -0.1, math.nan, math.inf, "1", True])
def test_equivalence_needs_a_positive_margin(margin):
    with pytest.raises(ValueError, match="margin"):
        R.equivalence(A5, B5, margin)
    with pytest.raises(ValueError, match="margin"):
        R.compare({"x": (A5, B5)}, margin=margin if margin is not None else {"x": None})


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="level.*0.5"):
        R.equivalence(A5, B5, 0.1, level=0.4)
    with pytest.raises(ValueError, match="p_values.*0, 1"):
        R.holm([0.1, 1.2])
    with pytest.raises(ValueError, match="p_values.*at least 1"):
        R.holm([])
    with pytest.raises(ValueError, match="rows.*non-empty"):
        R.compare({})
    with pytest.raises(ValueError, match=r"rows\['x'\]: must be a pair"):
        R.compare({"x": (A5,)})
    with pytest.raises(ValueError, match=r"rows\['x'\]: b: has 4 values"):
        R.compare({"x": (A5, B5[:4])})
    with pytest.raises(ValueError, match="margin.*'typo'"):
        R.compare({"x": (A5, B5)}, margin={"typo": 0.1})
    with pytest.raises(ValueError, match="names"):
        R.compare({"x": (A5, B5)}, names=("only one",))
    t = R.compare({"x": (A5, B5)})
    with pytest.raises(ValueError, match="scale"):
        R.verdict(t.rows[0], scale=0)
    with pytest.raises(ValueError, match="row"):
        R.verdict({"verdict": "difference"})
    with pytest.raises(ValueError, match="table"):
        R.markdown([t.rows[0]])
