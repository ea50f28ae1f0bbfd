"""Chapter 7 (population methods) executed headlessly in SMOKE mode, checking what it recorded.

The notebook trains ES, the Deep GA, GLS and SGD on digits, prunes by SNR, magnitude, random
masks and SGD, transfers tickets, measures interpolation barriers, and prints
``GLX_RESULTS {json}``; here the values are read back and checked again.
"""

from __future__ import annotations

import math

import pytest

from glx import report
from tests.nbrun import execute

pytestmark = pytest.mark.notebook

ARMS = ["snes", "sep_cma", "ga", "ga_lexicase", "random_search", "gls", "sgd"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    r, _ = execute("07_population_methods.ipynb", tmp_path_factory.mktemp("notebook07"))
    return r


def test_smoke_run_is_small(results):
    assert results["smoke"] is True
    assert results["seeds"] >= 3  # every interval needs three seeds


def test_dense_arms_learn(results):
    dense = results["dense"]
    assert sorted(dense) == sorted(f"digits/{a}" for a in ARMS)
    for arm, vals in dense.items():
        assert len(vals) == results["seeds"] and all(0 <= v <= 1 for v in vals), arm
    chance = 0.1
    for arm in ("snes", "sep_cma", "ga", "gls", "sgd"):
        assert min(dense[f"digits/{arm}"]) > 2 * chance, arm
    assert results["plain_es_acc"] > 2 * chance


def test_genome_rebuilds_bit_exactly(results):
    g = results["genome"]
    assert g["exact"] is True
    assert g["length"] >= 2 and g["compression"] > 1


def test_pruning_rounds_follow_keep(results):
    rem = results["remaining"]
    assert len(rem) == results["rounds"]
    for k, f in enumerate(rem):
        assert f == pytest.approx(results["keep"] ** k, abs=3e-3)
    for crit, per_seed in results["prune_acc"].items():
        assert len(per_seed) == results["seeds"], crit
        assert all(len(v) == results["rounds"] and all(0 <= a <= 1 for a in v)
                   for v in per_seed), crit
    assert all(0 <= j <= 1 for j in results["overlap"])


def test_transfer_and_lmc_recorded(results):
    t = results["transfer"]
    assert set(t) == {"sep_cma_ticket", "sep_cma_random", "sgd_ticket", "sgd_random"}
    assert all(len(v) == results["seeds"] for v in t.values())
    assert set(results["lmc"]) == {"SNES", "SGD (Adam)", "GLS", "SNES dense vs sparse",
                                   "SGD-IMP dense vs sparse"}
    for pair, b in results["lmc"].items():
        assert len(b["loss_barrier"]) == len(b["acc_barrier"]) == results["seeds"], pair
        # the end points lie on the line, so a barrier is never below 0
        assert all(math.isfinite(x) and x >= -1e-6 for x in b["loss_barrier"]), pair
        assert all(-1e-6 <= x <= 1 for x in b["acc_barrier"]), pair


def test_verdicts_come_from_report(results):
    v = results["verdicts"]
    assert len(v) == 9  # 5 pruning/transfer rows, the degradation row, 3 barrier rows
    assert all(x in report.VERDICTS for x in v.values())


def test_panel_ran(results):
    assert set(results["panel"]) == {"snes", "ga"}
