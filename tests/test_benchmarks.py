"""The benchmark scripts run and write figures that make sense (their speed is not tested)."""

from __future__ import annotations

import json
import subprocess
import sys
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
