"""The benchmark scripts run and write figures that make sense (their speed is not tested)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_bench_paths_times_both_paths(tmp_path):
    path = tmp_path / "paths.json"
    stdout = _run("bench_paths.py", "--models", "mlp,cnn", "--rounds", "1", "--steps", "2",
                  "--batch-size", "16", "--capture", "--vmap-batchnorm", "--json", str(path))
    assert "captured path skipped" in stdout  # CUDA graphs: CUDA only
    rows = json.loads(path.read_text())["rows"]
    assert [r["model"] for r in rows] == ["mlp", "cnn"]
    for r in rows:
        assert r["batched_ms"] > 0 and r["looped_ms"] > 0 and r["vmap_bn_ms"] > 0
        assert r["ratio"] == pytest.approx(r["batched_ms"] / r["looped_ms"])
        assert r["cpu_ratio"] == pytest.approx(r["batched_cpu_ms"] / r["looped_cpu_ms"])
        assert "captured_ms" not in r
        assert r["auto"] == "batched" and "CPU" in r["auto_reason"]


def test_bench_generation_quick_digits_mlp(tmp_path):
    path = tmp_path / "gen.json"
    stdout = _run("bench_generation.py", "--quick", "--cases", "digits-mlp", "--capture",
                  "--json", str(path))
    assert "targets:" in stdout and "captured: skipped" in stdout
    report = json.loads(path.read_text())
    assert report["env"]["device"] == "cpu" and report["env"]["keep_freed_memory"] is True
    (case,) = report["results"]
    assert case["auto_path"] == "batched" and set(case["variants"]) == {"a", "a_other", "b", "c"}
    assert case["ratios"]["b_over_a"] > 0 and case["ratios"]["batched_over_looped"] > 0
    assert [t["target"] for t in case["targets"]] == ["batched <= looped"]


# ----------------------------------------------------------------------------- cifar_compare


def _cifar_compare():
    spec = importlib.util.spec_from_file_location("cifar_compare",
                                                  ROOT / "benchmarks" / "cifar_compare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tiny_data_args() -> list[str]:
    """The CIFAR-10 tarball's first 16 images per class when CI has it, else synthetic data."""
    tar = os.environ.get("GLX_CIFAR10_TAR")
    if tar:
        return ["--cifar", tar, "--per-class", "16", "--models", "cnn", "--batch-size", "8"]
    return ["--cifar", "synthetic", "--models", "mlp", "--batch-size", "16"]


def _workers_of(folder: Path) -> list[int]:
    """Worker processes of cifar_compare whose command line names ``folder`` (Linux; else [])."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
        except OSError:
            continue
        if b"--worker" in text and str(folder).encode() in text:
            pids.append(int(cmdline.parent.name))
    return pids


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cifar_compare_appends_resumes_and_summarizes(tmp_path, capsys):
    """Every arm and seed gets one line as it finishes; a killed command keeps its finished
    lines, the same command then adds only the missing ones, and --summarize tabulates them."""
    mod = _cifar_compare()
    out = tmp_path / "out"
    args = [*_tiny_data_args(), "--epochs", "1", "--seeds", "0", "1", "--device", "cpu",
            "--threads", "1", "--data-root", str(tmp_path / "data"), "--out", str(out)]
    cmd = [sys.executable, str(ROOT / "benchmarks" / "cifar_compare.py"), *args]
    results = out / "results.jsonl"
    # Two worker processes; the command is killed (SIGKILL: no clean-up) once a run is written.
    proc = subprocess.Popen([*cmd, "--workers", "2"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (results.exists() and results.read_text().strip()):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no run finished within 120 s"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    # Its workers end with it (they would otherwise hold the device).
    end = time.monotonic() + 30
    while _workers_of(tmp_path) and time.monotonic() < end:
        time.sleep(0.2)
    assert not _workers_of(tmp_path)
    kept = _lines(results)  # every line whole JSON
    assert 1 <= len(kept) < 12
    # The same settings finish the rest (one by one in one process), keeping what was there.
    done = subprocess.run([*cmd, "--workers", "0"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = _lines(results)
    assert rows[:len(kept)] == kept
    pairs = sorted((r["arm"], r["seed"]) for r in rows)
    assert pairs == sorted((a, s) for a in mod.ARMS for s in (0, 1))  # one line each
    for r in rows:
        assert 0 <= r["test_accuracy"] <= 1 and r["budget"]["steps"] >= 1
        assert r["protocol"]["sgd_batch"] == "gls"
    by_arm = {(r["arm"], r["seed"]): r for r in rows}
    gls_row, sgd_row = by_arm[("gls", 0)], by_arm[("sgd_compute", 0)]
    assert sgd_row["budget"]["batch"] == gls_row["budget"]["batch"]  # the GLS per-child batch
    assert sgd_row["budget"]["images"] == gls_row["budget"]["images"]  # equal compute
    assert len(gls_row["winners"]) == gls_row["budget"]["generations"] == 5
    # Once more: nothing to do, the file stays as it was.
    text = results.read_text()
    capsys.readouterr()
    assert mod.main(args) == 0
    assert "0 to run" in capsys.readouterr().out and results.read_text() == text
    # The summary: one row per arm, the paired comparisons, the SGD batch named.
    assert mod.main(["--summarize", str(results)]) == 0
    table = capsys.readouterr().out
    for arm in mod.ARMS:
        assert f"| {arm} (" in table
    assert "selection: lexicase vs random (gls vs gls_random)" in table
    assert "TOST" in table and "Holm" in table
    assert "SGD batch: the GLS per-child batch" in table
    # Other settings into the same folder: refused, not mixed.
    with pytest.raises(SystemExit, match="other settings"):
        mod.main([*args, "--lr", "0.05"])


def test_cifar_compare_budgets_and_time_estimate():
    from glx import gls

    mod = _cifar_compare()
    base = gls.Config(model="mlp", dataset="synthetic", pop=4, batch_size=16,
                      generations=gls.paper_generations(2, 4))
    n = 512
    cfgs = {arm: mod.arm_config(arm, base, n) for arm in mod.ARMS}
    assert cfgs["gls_random"][0].selection == "random"
    assert cfgs["gls_inherit"][0].momentum_policy == "inherit"
    for arm in ("sgd_epochs", "sgd_lineage", "sgd_compute"):
        cfg, bud = cfgs[arm]
        assert cfg.method == "sgd" and cfg.pop == 1 and bud["batch"] == 16
    assert cfgs["sgd_compute"][1]["images"] == cfgs["gls"][1]["images"]
    assert cfgs["sgd_epochs"][1]["epochs"] == pytest.approx(2, rel=0.02)
    # Budgets in steps: lineage is its own arm, (p+1)/p times the epochs arm.
    assert cfgs["sgd_lineage"][1]["steps"] > cfgs["sgd_epochs"][1]["steps"]
    assert cfgs["sgd_lineage"][1]["epochs"] == pytest.approx(2.5, rel=0.02)
    assert cfgs["sgd_lineage"][1]["steps"] == cfgs["gls"][1]["steps"]  # the lineage's steps
    cfg128, bud128 = mod.arm_config("sgd_compute", base, n, "paper128")
    assert cfg128.batch_size == bud128["batch"] == 128
    with pytest.raises(ValueError, match="arm='sgd'"):
        mod.arm_config("sgd", base, n)
    # Predicted seconds: start-up plus images x the seconds per image measured so far.
    speed = mod.Speed()
    job = {"model": "m", "arm": "gls", "seed": 0, "budget": {"images": 1000}}
    assert speed.predict(job) is None  # nothing measured: unknown
    speed.observe(job, 2.0, 1, 4, 5.0)  # a quarter of 1000 images in 5 s
    assert speed.predict(job) == pytest.approx(2.0 + 1000 * 5.0 / 250)
    sgd_job = {"model": "m", "arm": "sgd_epochs", "seed": 0, "budget": {"images": 100}}
    assert speed.predict(sgd_job) == pytest.approx(2.0 + 100 * 5.0 / 250)  # the other method's
    assert speed.predict({**job, "model": "other"}) is None
    # Late runs: the latest seed is stopped first, and never the last run going.
    runs = [({"seed": 0}, (10, 100, 10.0)), ({"seed": 1}, (5, 100, 10.0)),
            ({"seed": 1}, (50, 100, 10.0)), ({"seed": 2}, None)]
    assert mod.shed(runs, now=0.0, limit=150.0) == 1  # needs 190 s; seed 0 needs 90 s
    assert mod.shed(runs, now=0.0, limit=1000.0) is None  # all in time
    assert mod.shed(runs[:1], now=0.0, limit=1.0) is None


def test_cifar_compare_bad_input_is_one_line(tmp_path, capsys):
    mod = _cifar_compare()
    assert mod.main(["--cifar", str(tmp_path / "none.tar.gz"), "--out", str(tmp_path)]) == 2
    assert "error: " in capsys.readouterr().err
    for bad in (["--models", "nonet"], ["--arms", "gls,sgd"], []):  # [] lacks --out
        with pytest.raises(SystemExit) as exc:
            mod.main(["--cifar", "synthetic", *bad, *(["--out", str(tmp_path)] if bad else [])])
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--models ['nonet']" in err and "--arms ['sgd']" in err and "--out is required" in err
    assert mod.main(["--summarize", str(tmp_path / "none.jsonl")]) == 2
