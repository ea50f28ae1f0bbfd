"""Chapters 5 (CIFAR-10 training) and 6 (representation diversity), executed in SMOKE mode.

Chapter 5 trains on a slice of the CIFAR-10 JPEG tarball when it can find it (``GLX_CIFAR10_TAR``,
else the notebook's default path beside the project) and on synthetic images otherwise. It is
executed twice on one checkpoint folder: the second execution must resume every finished run
instead of training it again (that a resumed run ends where an uninterrupted one does is
``tests/test_resume.py``). Chapter 6 trains its six arms on digits, and runs once more on
chapter 5's checkpoints. The values each notebook recorded (its hidden ``GLX_RESULTS`` line)
are checked here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from glx import gls
from tests.nbrun import NOTEBOOKS, execute

pytestmark = pytest.mark.notebook

NB05 = "05_cifar10_training.ipynb"
NB06 = "06_representation_diversity.ipynb"
DEFAULT_TAR = NOTEBOOKS / "../../shared/data/cifar10-jpeg.tar.gz"  # the notebook's default
VERDICTS = {"difference", "inconclusive"}  # glx.report's verdicts without a margin
ARMS = ["gls", "random", "inherit", "sgd_lineage", "sgd_epochs", "sgd_compute"]


def _tarball() -> Path | None:
    """The tarball chapter 5 will use: nbrun passes GLX_CIFAR10_TAR when it is set."""
    env = os.environ.get("GLX_CIFAR10_TAR")
    path = Path(env) if env else DEFAULT_TAR
    return path if path.is_file() else None


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _run_files(folder: Path, method: str) -> list[Path]:
    """Chapter 5's run checkpoints (``<arch>-<method>-seed<s>-<digest>.pt``), by seed."""
    files = [p for p in folder.glob(f"*-{method}-seed*-*.pt") if p.name.count(".") == 1]
    return sorted(files, key=lambda p: int(p.name.split("-seed")[1].split("-")[0]))


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkpoints05")


@pytest.fixture(scope="module")
def run05(tmp_path_factory, ckpt_dir):
    r, _ = execute(NB05, tmp_path_factory.mktemp("nb05"), CHECKPOINT_DIR=str(ckpt_dir))
    return r


@pytest.fixture(scope="module")
def run06(tmp_path_factory):
    r, _ = execute(NB06, tmp_path_factory.mktemp("nb06"))
    return r


# ------------------------------------------------------------------------------- chapter 5


def test_05_trains_both_methods_on_the_expected_data(run05):
    r = run05
    assert r["smoke"] is True and r["arch"] == "fastnet"
    assert r["source"] == ("tar" if _tarball() else "synthetic")
    if r["source"] == "tar":
        assert r["n_train"] == 500 and r["n_test"] == 500  # 50 images per class and split
    assert r["budget"] == {"gls": 10, "sgd": 2}  # 2 nominal epochs at p = 4
    assert r["seeds"] == [0, 1]
    assert r["history_lengths"] == {f"{m}-{s}": r["budget"][m] for m in ("gls", "sgd")
                                    for s in (0, 1)}
    assert all(r["checkpoint_files"].values()) and len(r["checkpoint_files"]) == 4
    for method in ("gls", "sgd"):
        acc = r["test_acc"][method]
        assert len(acc) == 2 and all(_finite(a) and 0 <= a <= 100 for a in acc), acc
        assert all(_finite(w) and w > 0 for w in r["wall_s"][method])
    if r["source"] == "synthetic":  # learnable in seconds; a 500-image CIFAR slice is not
        chance = 100 * r["chance"]
        assert min(sum(a) / len(a) for a in r["test_acc"].values()) > chance + 5


def test_05_table_has_both_methods_and_the_caveats(run05):
    table = "\n".join(run05["table"])
    assert "| SGD |" in table and "| GLS (p=4) |" in table
    assert run05["paper"] is None  # fastnet is not in the paper's Table 1
    c = run05["comparison"]  # glx.report, paired by seed
    acc = run05["test_acc"]
    assert c["a"] == "GLS" and c["b"] == "SGD" and c["paired"] and c["n_a"] == 2
    assert c["diff"] == pytest.approx(sum(acc["gls"]) / 2 - sum(acc["sgd"]) / 2)
    assert c["low"] <= c["diff"] <= c["high"] and c["verdict"] in VERDICTS
    notes = " ".join(run05["notes"])
    assert "not in the paper's Table 1" in notes and "protocol" in notes
    if run05["source"] == "tar":
        assert "JPEG" in notes


def test_05_writes_one_checkpoint_per_run(run05, ckpt_dir):
    for method in ("gls", "sgd"):
        files = _run_files(ckpt_dir, method)
        assert len(files) == 2 and all(f.stat().st_size > 0 for f in files), files


def test_05_second_execution_resumes_finished_runs(run05, ckpt_dir, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in ckpt_dir.glob("*.pt")}
    r, _ = execute(NB05, tmp_path, CHECKPOINT_DIR=str(ckpt_dir))
    assert r["started_at"] == {f"{m}-{s}": r["budget"][m] for m in ("gls", "sgd") for s in (0, 1)}
    assert r["test_acc"] == run05["test_acc"]
    after = {p.name: p.stat().st_mtime_ns for p in ckpt_dir.glob("*.pt")}
    assert after == before, "finished runs must not be trained or written again"


def test_05_falls_back_to_synthetic_images(run05, tmp_path):
    if run05["source"] == "synthetic":
        pytest.skip("the main execution already ran on synthetic images")
    r, _ = execute(NB05, tmp_path, CIFAR10_TAR=str(tmp_path / "missing.tar.gz"),
                   CHECKPOINT_DIR=str(tmp_path / "ck"))
    assert r["source"] == "synthetic"
    chance = 100 * r["chance"]
    assert min(sum(a) / len(a) for a in r["test_acc"].values()) > chance + 5, r["test_acc"]


# ------------------------------------------------------------------------------- chapter 6


def _check_cka_matrix(m, size=None, diagonal_one=True):
    assert size is None or (len(m) == size and all(len(row) == size for row in m))
    for i, row in enumerate(m):
        for j, v in enumerate(row):
            assert _finite(v) and -0.2 <= v <= 1 + 1e-9, (i, j, v)
        if diagonal_one:
            assert abs(row[i] - 1) < 1e-9, (i, row[i])


SOURCES = {"selection", "momentum policy", "SubGD", "budget"}  # one cause per row
MIXED = "selection + SubGD + budget"  # GLS vs SGD only (checkpoints): named as the mix it is


def _check_chapter6(r, seeds, arms, pop=4, sources=frozenset(SOURCES)):
    assert r["seeds"] == seeds and r["arms"] == arms
    for name, (mine, theirs) in r["scratch_cka"].items():  # CKA by hand = glx.analysis
        assert mine == pytest.approx(theirs, abs=1e-9), name
    assert r["scratch_cka"]["X vs itself rotated and scaled by 3"][0] == pytest.approx(1.0)
    assert r["scratch_cka"]["X vs unrelated features"][0] < 0.5
    for arm in arms:
        acc = r["test_acc"][arm]
        assert len(acc) == seeds and all(_finite(a) and 0 <= a <= 1 for a in acc), (arm, acc)
    cka = r["cka"]
    blocks, layers = cka["blocks"], cka["layers"]
    assert len(blocks) >= 3 and blocks[-1] == "head" and layers == blocks + ["penultimate"]
    for m in cka["within"].values():
        _check_cka_matrix(m, len(blocks))
    ref = "sgd_epochs"
    assert set(cka["same_seed"]) == set(arms) - {ref}
    for rows in cka["same_seed"].values():
        assert len(rows) == seeds
        _check_cka_matrix(rows, diagonal_one=False)
    if seeds >= 3:  # different-seed pairs: a ring over the seeds
        assert [tuple(p) for p in cka["ring"]] == [(s, (s + 1) % seeds) for s in range(seeds)]
        assert set(cka["other_seed"]) == set(arms)
        for rows in cka["other_seed"].values():
            assert len(rows) == seeds
            _check_cka_matrix(rows, diagonal_one=False)
    else:
        assert cka["other_seed"] == {} and cka["ring"] == []
    assert r["children"], "children of at least one generation"
    for st in r["children"].values():
        _check_cka_matrix(st["penultimate_matrix"], pop)
        assert 0 <= st["winner"] < pop and len(st["child_acc"]) == pop
        assert all(_finite(v) and -0.2 <= v <= 1 + 1e-9 for v in st["mean_offdiag"].values())
    per_model = r["per_model"]
    for arm in arms:
        ranks = per_model["effective rank | penultimate"][arm]
        assert len(ranks) == seeds and all(1 <= v <= r["n_probe"] for v in ranks)
    tails = [k for k in per_model if k.startswith("tail mass | ")]
    assert len(tails) == len(r["thresholds"]) >= 1
    for k in tails:  # the threshold is SGD's 99th percentile: SGD's tail mass is about 0.01
        sgd = per_model[k][ref]
        assert 0 <= sum(sgd) / len(sgd) <= 0.015
        assert all(0 <= v <= 1 for arm in arms for v in per_model[k][arm])
    # every row of every table: a same-seed (or ring) paired difference with a named source
    tables = r["tables"]  # one per statistic and layer, plus the two CKA tables
    assert {"effective rank | penultimate", "test accuracy"} <= set(tables)
    for layer in r["thresholds"]:
        assert {f"tail mass | {layer}", f"standardised tail mass | {layer}"} <= set(tables)
    for name, rows in tables.items():
        assert rows, name
        for row in rows:
            assert row["paired"] is True and row["verdict"] in VERDICTS, (name, row)
            assert row["low"] <= row["diff"] <= row["high"] and row["p"] <= row["p_holm"] <= 1
            assert r["sources"][f"{name} | {row['label']}"] in sources, (name, row)
            # Bonferroni: each interval at level 1 - 0.05 / m, wider than the per-row 95% one
            assert row["level"] == pytest.approx(0.95)
            assert row["level_adj"] == pytest.approx(1 - 0.05 / len(rows))
            assert row["low_adj"] <= row["low"] <= row["high"] <= row["high_adj"], (name, row)
            if len(rows) > 1 and row["high"] > row["low"]:
                assert row["high_adj"] - row["low_adj"] > row["high"] - row["low"], (name, row)
    assert _finite(r["wall_s"]) and r["wall_s"] > 0


def test_06_trains_small_models_and_measures_them(run06):
    r = run06
    assert r["smoke"] is True and r["from_checkpoints"] is False
    assert r["data"] == "digits" and r["model"] == "cnn" and r["n_probe"] == 300
    _check_chapter6(r, seeds=3, arms=ARMS)
    for arm in ARMS:  # digits are easy: well above chance (0.1) within 3 epochs
        acc = r["test_acc"][arm]
        assert sum(acc) / len(acc) > 0.5, (arm, acc)
    assert len(r["children"]) == 2  # SMOKE keeps the children at 25% and 75% of the run
    # the budgets of the controls: lineage data, equal epochs and equal compute (15 generations
    # at p = 4); the lineage arm trains on (p + 1) / p of the equal-epochs arm's steps
    steps = gls.budget(15, 4, 1437, 64)  # SGD matched in optimizer steps at batch 64
    assert steps["lineage"]["steps"] > steps["epochs"]["steps"]
    assert r["budget"] == {"gls": 15, "random": 15, "inherit": 15,
                           "sgd_lineage": steps["lineage"]["generations"],
                           "sgd_epochs": steps["epochs"]["generations"],
                           "sgd_compute": steps["compute"]["generations"]}
    # every row changes one cause: selection, momentum policy, SubGD or budget; GLS vs SGD
    # (which mixes selection, SubGD and budget) is not a row
    labels = {row["label"]: r["sources"][f"effective rank | penultimate | {row['label']}"]
              for row in r["tables"]["effective rank | penultimate"]}
    assert labels == {"GLS vs random selection": "selection",
                      "GLS, inherited momentum vs GLS": "momentum policy",
                      "random selection vs SGD, lineage data": "SubGD",
                      "SGD, lineage data vs SGD, equal epochs": "budget",
                      "SGD, equal compute vs SGD, equal epochs": "budget"}
    # same-seed CKA (to SGD at equal epochs of the seed) compares arms with arms only
    same = {row["label"] for row in r["tables"]["CKA, same seed"]}
    assert same == {"GLS vs random selection", "GLS, inherited momentum vs GLS"}
    other = {row["label"] for row in r["tables"]["CKA, different seeds"]}
    assert other == set(labels)


def test_06_analyses_chapter5_checkpoints(run05, ckpt_dir, tmp_path):
    gls_files, sgd_files = _run_files(ckpt_dir, "gls"), _run_files(ckpt_dir, "sgd")
    tar = "cifar10-tar" if run05["source"] == "tar" else "synthetic"
    params = {"GLS_CHECKPOINTS": [str(p) for p in gls_files],
              "SGD_CHECKPOINTS": [str(p) for p in sgd_files],
              "MODEL_KW": {"widths": [8, 16, 32], "stem": 8}, "DATA": tar, "PER_CLASS": 50}
    if tar == "cifar10-tar":
        params["CIFAR10_TAR"] = str(_tarball())
    r, _ = execute(NB06, tmp_path, **params)
    assert r["from_checkpoints"] is True and r["model"] == "fastnet"
    # chapter 5 matched SGD on epochs: its one row mixes the causes and is named so
    _check_chapter6(r, seeds=2, arms=["gls", "sgd_epochs"], sources={MIXED})
    assert set(r["sources"].values()) == {MIXED}
    for method, arm in (("gls", "gls"), ("sgd", "sgd_epochs")):  # chapter 5 records percent
        got, want = r["test_acc"][arm], [a / 100 for a in run05["test_acc"][method]]
        assert got == pytest.approx(want, abs=1e-9)
