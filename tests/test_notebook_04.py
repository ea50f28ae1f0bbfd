"""Chapter 4 (ablations) executed headlessly in SMOKE mode, asserting on what it recorded.

The notebook runs every arm (selection operator, tie rule, selection data, population size,
momentum policy, SGD at three matched budgets) over several seeds through ``glx.gls`` and
prints ``GLX_RESULTS {json}``; here the values are read back and checked again.
"""

from __future__ import annotations

import math

import pytest

from glx import gls
from tests.nbrun import execute

pytestmark = pytest.mark.notebook

MNIST1D_ARMS = [
    "lexicase", "random", "tournament", "best_aggregate", "eliminate_all", "as_released",
    "augmented", "holdout", "pop2", "pop8", "inherit", "sgd_epochs", "sgd_lineage",
    "sgd_compute",
]
DIGITS_ARMS = ["lexicase", "random", "tournament", "best_aggregate", "sgd_epochs",
               "sgd_lineage", "sgd_compute"]
LEXICASE_ON_TRAINING = ("lexicase", "eliminate_all", "as_released", "augmented", "pop2",
                        "pop8", "inherit")
NO_DECIDING_CASE = ("random", "tournament", "best_aggregate", "holdout", "sgd_epochs",
                    "sgd_lineage", "sgd_compute")
VERDICTS = ("reference", "within noise", "higher", "lower")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    r, _ = execute("04_ablations.ipynb", tmp_path_factory.mktemp("notebook04"))
    return r


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_every_arm_present_with_all_seeds(results):
    assert results["smoke"] is True
    seeds = results["seeds"]
    assert seeds >= 2
    expected = {"mnist1d": MNIST1D_ARMS, "digits": DIGITS_ARMS}
    assert set(results["datasets"]) == set(expected)
    for ds, arms in expected.items():
        got = results["datasets"][ds]["arms"]
        assert list(got) == arms, ds
        for arm, a in got.items():
            assert a["n"] == seeds and a["seeds"] == list(range(seeds)), (ds, arm)
            assert len(a["test_acc"]) == seeds, (ds, arm)


def test_accuracies_and_intervals(results):
    for ds, d in results["datasets"].items():
        chance = 1 / d["num_classes"]
        for arm, a in d["arms"].items():
            accs = a["test_acc"]
            assert all(_finite(x) and 0 < x <= 1 for x in accs), (ds, arm, accs)
            assert a["mean"] == pytest.approx(sum(accs) / len(accs))
            assert a["mean"] > chance, (ds, arm, a["mean"])
            assert a["lo"] <= a["mean"] <= a["hi"], (ds, arm)
            assert a["diff_lo"] <= a["diff_mean"] <= a["diff_hi"], (ds, arm)
            assert a["verdict"] in VERDICTS
            if a["verdict"] == "within noise":
                assert a["diff_lo"] <= 0 <= a["diff_hi"], (ds, arm)
            elif a["verdict"] in ("higher", "lower"):
                assert not a["diff_lo"] <= 0 <= a["diff_hi"], (ds, arm)
                assert (a["diff_mean"] > 0) == (a["verdict"] == "higher"), (ds, arm)
        ref = d["arms"]["lexicase"]
        assert ref["verdict"] == "reference"
        assert ref["diff_mean"] == ref["diff_lo"] == ref["diff_hi"] == 0


def test_paired_differences_match_per_seed_values(results):
    for ds, d in results["datasets"].items():
        ref = d["arms"]["lexicase"]["test_acc"]
        for arm, a in d["arms"].items():
            diffs = [x - y for x, y in zip(a["test_acc"], ref, strict=True)]
            assert a["diff_mean"] == pytest.approx(sum(diffs) / len(diffs), abs=1e-12), (ds, arm)


def test_cases_used_and_deciding_case(results):
    for ds, d in results["datasets"].items():
        n_train = d["n_train"]
        for arm, a in d["arms"].items():
            share = a["winner_trained_on_deciding"]
            assert _finite(a["cases_used"]) and a["cases_used"] >= 0
            assert 0 <= a["fallback"] <= 1
            if arm in NO_DECIDING_CASE:
                assert share is None, (ds, arm)
            if arm in LEXICASE_ON_TRAINING:
                assert 0 < a["cases_used"] <= n_train, (ds, arm)
                assert share is not None and 0 <= share <= 1, (ds, arm)
        arms = d["arms"]
        assert arms["random"]["cases_used"] == 0
        for arm in ("tournament", "best_aggregate"):
            assert arms[arm]["cases_used"] == min(1024, n_train)
        for arm in ("sgd_epochs", "sgd_lineage", "sgd_compute"):
            assert arms[arm]["cases_used"] == 0 and arms[arm]["pop"] == 1


def test_budgets(results):
    for ds, d in results["datasets"].items():
        g = results["generations"][ds]
        arms = d["arms"]
        for match in ("epochs", "lineage", "compute"):
            # fractional epochs: the last one partial
            assert arms[f"sgd_{match}"]["generations"] == math.ceil(gls.sgd_epochs(g, 4, match))
        gls_arms = [a for a in arms if not a.startswith("sgd_")]
        assert all(arms[a]["generations"] == g for a in gls_arms)
        assert arms["lexicase"]["pop"] == 4
        if "pop2" in arms:
            assert arms["pop2"]["pop"] == 2 and arms["pop8"]["pop"] == 8


def test_table_rows_match_arms(results):
    for d in results["datasets"].values():
        assert d["table_rows"] == list(d["arms"])
        lines = d["table"].splitlines()
        assert len(lines) == 2 + len(d["arms"])
        for line, arm in zip(lines[2:], d["arms"], strict=True):
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[0] == arm
            assert cells[2] == str(d["arms"][arm]["n"])
            assert cells[5] == d["arms"][arm]["verdict"]


def test_conclusions_come_from_the_numbers(results):
    comps = results["comparisons"]
    pairs = {(c["dataset"], c["a"], c["b"]) for c in comps}
    for ds in results["datasets"]:
        assert (ds, "lexicase", "random") in pairs
        assert (ds, "sgd_compute", "lexicase") in pairs
        assert results["datasets"][ds]["conclusions"]
    for c in comps:
        assert c["lo"] <= c["mean"] <= c["hi"]
        covers = c["lo"] <= 0 <= c["hi"]
        assert (c["verdict"] == "within noise") == covers
        assert ("within noise" in c["text"]) == covers
        assert c["k"] >= 1 and isinstance(c["survives_bonferroni"], bool)
        assert not (covers and c["survives_bonferroni"])
        assert f"{100 * c['mean']:+.1f}" in c["text"]
        arms = results["datasets"][c["dataset"]]["arms"]
        a, b = arms[c["a"]]["test_acc"], arms[c["b"]]["test_acc"]
        assert c["mean"] == pytest.approx(sum(x - y for x, y in zip(a, b, strict=True)) / len(a))
