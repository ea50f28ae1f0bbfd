"""Chapter 4 (ablations) executed headlessly in SMOKE mode, asserting on what it recorded.

The notebook runs every arm on MNIST-1D with the MLP, and the main arms with the 1D CNN, over
several seeds through ``glx.gls``, compares them with ``glx.report`` and prints its values in a
hidden last cell (``GLX_RESULTS {json}``); here they are read back and checked.
"""

from __future__ import annotations

import math

import pytest

from glx import gls
from tests.nbrun import execute

pytestmark = pytest.mark.notebook

MLP_ARMS = [
    "lexicase", "random", "tournament", "best_aggregate", "eliminate_all", "as_released",
    "augmented", "holdout", "pop2", "pop8", "inherit", "random_inherit", "sgd_epochs",
    "sgd_lineage", "sgd_compute",
]
CNN_ARMS = ["lexicase", "random", "inherit", "random_inherit", "sgd_epochs", "sgd_lineage",
            "sgd_compute"]
LEXICASE_ON_TRAINING = ("lexicase", "eliminate_all", "as_released", "augmented", "pop2",
                        "pop8", "inherit")
NO_DECIDING_CASE = ("random", "random_inherit", "tournament", "best_aggregate", "holdout",
                    "sgd_epochs", "sgd_lineage", "sgd_compute")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    r, _ = execute("04_ablations.ipynb", tmp_path_factory.mktemp("notebook04"))
    return r


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_every_arm_of_both_models_with_all_seeds(results):
    assert results["smoke"] is True and results["lr"] == 0.05
    seeds = results["seeds"]
    assert seeds >= 2 and results["models"] == ["mlp", "cnn1d"]
    assert list(results["arms"]["mlp"]) == MLP_ARMS
    assert list(results["arms"]["cnn1d"]) == CNN_ARMS
    chance = 1 / results["num_classes"]
    for model, arms in results["arms"].items():
        for arm, a in arms.items():
            assert a["seeds"] == list(range(seeds)), (model, arm)
            accs = a["test_acc"]
            assert len(accs) == seeds and all(_finite(x) and 0 < x <= 1 for x in accs)
            assert sum(accs) / seeds > chance, (model, arm, accs)


def test_budgets(results):
    g = results["generations"]
    budget = gls.budget(g, 4, results["n_train"], 64)  # SGD matched in optimizer steps
    for model, arms in results["arms"].items():
        for match in ("epochs", "lineage", "compute"):
            sgd = arms[f"sgd_{match}"]
            assert set(sgd["steps"]) == {budget[match]["steps"]}, (model, match)
            assert set(sgd["generations"]) == {budget[match]["generations"]}
            assert set(sgd["pop"]) == {1}
        # the three budgets differ, and compute matches GLS's gradient work
        assert len({budget[m]["steps"] for m in ("epochs", "lineage", "compute")}) == 3
        assert budget["compute"]["steps"] == budget["gls"]["gradient_steps"]
        assert set(arms["lexicase"]["steps"]) == {budget["gls"]["steps"]}
        for arm, a in arms.items():
            if not arm.startswith("sgd_"):
                assert set(a["generations"]) == {g}, (model, arm)
        assert set(arms["lexicase"]["pop"]) == {4}
    mlp = results["arms"]["mlp"]
    assert set(mlp["pop2"]["pop"]) == {2} and set(mlp["pop8"]["pop"]) == {8}


def test_cases_used_and_deciding_case(results):
    n_train = results["n_train"]
    for model, arms in results["arms"].items():
        for arm, a in arms.items():
            for cases, share, fb in zip(a["cases_used"], a["winner_trained_on_deciding"],
                                        a["fallback"], strict=True):
                assert _finite(cases) and cases >= 0 and 0 <= fb <= 1
                if arm in NO_DECIDING_CASE:
                    assert share is None, (model, arm)
                if arm in LEXICASE_ON_TRAINING:  # a seed may have no decided generation
                    assert 0 < cases <= n_train, (model, arm)
                    assert share is None or 0 <= share <= 1, (model, arm)
        shares = arms["lexicase"]["winner_trained_on_deciding"]
        assert any(s is not None for s in shares), (model, shares)
        assert set(arms["random"]["cases_used"]) == {0}
        for arm in ("sgd_epochs", "sgd_lineage", "sgd_compute"):
            assert set(arms[arm]["cases_used"]) == {0}
    for arm in ("tournament", "best_aggregate"):
        assert set(results["arms"]["mlp"][arm]["cases_used"]) == {min(1024, n_train)}


def test_comparisons_come_from_glx_report(results):
    margin = results["margin"]
    assert margin == 0.01
    for model, rows in results["comparisons"].items():
        arms = results["arms"][model]
        labels = [c["label"] for c in rows]
        assert len(labels) == len(set(labels))
        # lexicase vs random is an equivalence test; GLS-inherit faces SGD directly
        for label in ("lexicase vs random", "inherit vs random_inherit", "inherit vs sgd_epochs",
                      "inherit vs sgd_compute", "lexicase vs sgd_compute"):
            assert label in labels, (model, label)
        p_holm = []
        for c in rows:
            a, b = arms[c["a"]]["test_acc"], arms[c["b"]]["test_acc"]
            assert c["paired"] and c["n_a"] == len(a)
            assert c["diff"] == pytest.approx(sum(x - y for x, y in zip(a, b, strict=True))
                                              / len(a))
            assert c["low"] <= c["diff"] <= c["high"]
            assert c["p"] <= c["p_holm"] <= 1
            p_holm.append(c["p_holm"])
            if c["label"] in ("lexicase vs random", "inherit vs random_inherit"):
                assert c["margin"] == margin and c["tost_p_holm"] is not None
                assert c["verdict"] in ("difference", "equivalent", "inconclusive")
                if c["verdict"] == "equivalent":
                    assert -margin < c["tost_low"] and c["tost_high"] < margin
            else:
                assert c["margin"] is None and c["verdict"] in ("difference", "inconclusive")
            if c["verdict"] == "difference":
                assert c["p_holm"] < 0.05
        # Holm: the adjusted p-values keep the order of the raw ones
        order = sorted(range(len(rows)), key=lambda i: rows[i]["p"])
        assert [p_holm[i] for i in order] == sorted(p_holm)
        assert set(results["questions"][c["label"]] for c in rows) <= {
            "Does lexicase matter?", "Tie rules", "Selection data", "Population size",
            "Momentum policy", "GLS against SGD"}
