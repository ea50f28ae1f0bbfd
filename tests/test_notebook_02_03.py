"""Chapters 2 and 3 executed headlessly (papermill, SMOKE mode), asserting on what they computed.

Each notebook's last cell checks its own results and prints ``GLX_RESULTS {json}``; the values
are read back here and checked again, so a notebook that runs but computes nonsense fails.
"""

from __future__ import annotations

import math

import pytest

from tests.nbrun import execute

pytestmark = pytest.mark.notebook

N_TRAIN_DIGITS = 1437


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("notebooks_02_03")


def _prob(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and 0.0 <= x <= 1.0


def test_02_subset_gradient_descent(out_dir):
    r, _ = execute("02_subset_gradient_descent.ipynb", out_dir)
    # the round-robin parts are disjoint and together are the whole epoch
    assert r["parts_disjoint"] is True and r["parts_cover"] is True
    assert sum(r["part_sizes"]) == N_TRAIN_DIGITS and len(r["part_sizes"]) == 4
    # glx.gls.deal deals the full rounds exactly as the from-scratch cell does
    # (the last, partial round sits out: glx's default last_round="drop")
    assert r["deal_matches_scratch"] is True and r["deal_steps"] == N_TRAIN_DIGITS // (4 * 64)
    # children moved away from the parent and from each other
    assert min(r["scratch_from_parent"]) > 0 and r["scratch_between_children_min"] > 0
    for name, probe in r["probe"].items():
        assert probe["from_parent"] > 0 and probe["between"] > 0, name
        assert _prob(probe["disagreement"]) and _prob(probe["any_disagreement"]), name
        assert probe["disagreement"] <= probe["any_disagreement"], name
    trained = r["probe"]["trained parent, reset"]
    assert min(trained["child_acc"]) > 0.5  # chance is 0.1
    # an inherited momentum buffer moves the children further than a fresh one
    assert r["probe"]["trained parent, inherit"]["from_parent"] > trained["from_parent"]
    # momentum 0: no buffer, so the two policies are the same computation
    assert r["m0_policies_identical"] is True
    rows = {(g["momentum"], g["policy"]): g for g in r["momentum_grid"]}
    assert rows[(0.0, "reset")] == {**rows[(0.0, "inherit")], "policy": "reset"}
    # the reset-momentum arithmetic: no loss without momentum, a large one at 0.9 on digits
    assert r["reset_share_digits"][0] == 1.0 and r["reset_share_digits"][-1] < 0.5
    for arm, accs in r["run_test_acc"].items():
        assert all(_prob(a) for a in accs), arm
    assert max(max(v) for v in r["run_test_acc"].values()) > 0.85
    steps = {g["p"]: g["steps"] for g in r["static_grid"]}
    assert steps[2] > steps[4] >= 1
    for g in r["static_grid"]:  # full rounds only: the partial round sits out
        assert g["steps"] == N_TRAIN_DIGITS // (g["p"] * 64) and g["between"] > 0, g
    # the run comparisons come from glx.report (paired by seed, Holm across the rows)
    comps = r["comparisons"]
    assert len(comps) == 2 and all(c["paired"] and c["n_a"] >= 2 for c in comps)
    for c in comps:
        assert c["low"] <= c["diff"] <= c["high"] and c["p"] <= c["p_holm"] <= 1
        assert c["verdict"] in ("difference", "inconclusive")
        other = "m=0.9 inherit" if c["label"].startswith("reset") else "m=0.0 reset"
        a, b = r["run_test_acc"]["m=0.9 reset"], r["run_test_acc"][other]
        assert c["diff"] == pytest.approx(sum(a) / len(a) - sum(b) / len(b))


def test_03_gls_on_digits(out_dir):
    r, _ = execute("03_gls_on_digits.ipynb", out_dir)
    # the from-scratch loop learns: well above chance (0.1) after a few generations
    assert len(r["scratch_test_acc"]) == len(r["scratch_winners"]) >= 1
    assert all(0 <= w < 4 for w in r["scratch_winners"])
    assert r["scratch_test_acc"][-1] > 0.5
    accs = r["test_acc"]
    assert set(accs) == {"gls", "sgd_epochs", "sgd_compute"}
    n_seeds = len(r["seeds"])
    assert n_seeds >= 2 and all(len(v) == n_seeds for v in accs.values())
    assert all(_prob(a) for v in accs.values() for a in v)
    assert min(accs["gls"]) > 0.8 and min(accs["sgd_compute"]) > 0.8  # chance is 0.1
    # the comparisons come from glx.report: paired by seed, Holm across the two rows
    rows = {c["label"]: c for c in r["comparisons"]}
    assert set(rows) == {"GLS vs SGD (epochs)", "GLS vs SGD (compute)"}
    for match in ("epochs", "compute"):
        c = rows[f"GLS vs SGD ({match})"]
        assert c["paired"] is True and c["n_a"] == n_seeds
        assert c["low"] <= c["diff"] <= c["high"] and c["p"] <= c["p_holm"] <= 1
        gls_mean = sum(accs["gls"]) / n_seeds
        sgd_mean = sum(accs[f"sgd_{match}"]) / n_seeds
        assert c["diff"] == pytest.approx(gls_mean - sgd_mean)
        assert c["verdict"] in ("difference", "inconclusive")  # no margin: never "equivalent"
    assert len(r["verdicts"]) == 2
    for text, c in zip(r["verdicts"], r["comparisons"], strict=True):
        assert f"{100 * c['diff']:+.2f}" in text.replace("−", "-")
    # selection records
    assert all(1 <= c <= N_TRAIN_DIGITS for c in r["cases_used"])
    assert all(0 <= w < 4 for w in r["winners"])
    d = r["deciding"]
    assert d["decided"] > 0 and 0 <= d["hits"] <= d["decided"]
    assert _prob(d["share"]) and d["share"] == pytest.approx(d["hits"] / d["decided"])
    assert d["lo"] <= d["share"] <= d["hi"] and d["chance"] == 0.25
    assert d["decided"] + d["fallbacks"] <= d["generations"]
    # the control panel was run from code with its starting controls
    panel = r["panel"]
    assert panel["gls_generations"] >= 1 and panel["sgd_generations"] >= 1
    assert _prob(panel["gls_test_acc"]) and panel["gls_test_acc"] > 0.1
