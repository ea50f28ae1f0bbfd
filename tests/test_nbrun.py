"""tests/nbrun.py: one execution per (notebook, parameters) per session, shared by the tests."""

from __future__ import annotations

import json

import pytest

from tests import nbrun


@pytest.fixture
def runs(monkeypatch, tmp_path):
    """Stand in for papermill: each execution writes a notebook recording its call number."""
    calls: list[tuple[str, dict]] = []

    def fake_run(name, out, parameters):
        calls.append((name, dict(parameters)))
        out.parent.mkdir(parents=True, exist_ok=True)
        line = "GLX_RESULTS " + json.dumps({"call": len(calls), **parameters}) + "\n"
        out.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": [
            {"output_type": "stream", "name": "stdout", "text": [line]}]}]}))

    monkeypatch.setattr(nbrun, "_run", fake_run)
    monkeypatch.setattr(nbrun, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(nbrun, "_session", {})
    monkeypatch.delenv("GLX_CIFAR10_TAR", raising=False)
    return calls


def test_same_parameters_execute_once_and_land_in_each_folder(runs, tmp_path):
    r1, p1 = nbrun.execute("01_x.ipynb", tmp_path / "a")
    r2, p2 = nbrun.execute("01_x.ipynb", tmp_path / "b", SMOKE=True)
    assert len(runs) == 1 and r1 == r2 == {"call": 1, "SMOKE": True}
    assert p1 == tmp_path / "a" / "01_x.ipynb" and p2 == tmp_path / "b" / "01_x.ipynb"
    assert p1.is_file() and p2.is_file()


def test_other_parameters_or_notebooks_execute_again(runs, tmp_path):
    nbrun.execute("01_x.ipynb", tmp_path)
    r, _ = nbrun.execute("01_x.ipynb", tmp_path, SEEDS=3)
    nbrun.execute("02_y.ipynb", tmp_path)
    assert len(runs) == 3 and r == {"call": 2, "SEEDS": 3, "SMOKE": True}


def test_a_parameter_naming_a_folder_executes_every_time(runs, tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for params in ({"CHECKPOINT_DIR": str(folder)}, {"PATHS": ["x.pt", str(folder)]}):
        nbrun.execute("05_z.ipynb", tmp_path, **params)
        r, _ = nbrun.execute("05_z.ipynb", tmp_path, **params)
        assert r["call"] == len(runs)
    assert len(runs) == 4
    # a folder that does not exist yet names no state: shared like any other value
    nbrun.execute("05_z.ipynb", tmp_path, CHECKPOINT_DIR=str(tmp_path / "new"))
    nbrun.execute("05_z.ipynb", tmp_path, CHECKPOINT_DIR=str(tmp_path / "new"))
    assert len(runs) == 5


def test_a_failed_execution_is_not_cached(runs, monkeypatch, tmp_path):
    ok = nbrun._run

    def failing(name, out, parameters):
        raise RuntimeError("kernel died")

    monkeypatch.setattr(nbrun, "_run", failing)
    with pytest.raises(RuntimeError):
        nbrun.execute("01_x.ipynb", tmp_path)
    monkeypatch.setattr(nbrun, "_run", ok)
    r, _ = nbrun.execute("01_x.ipynb", tmp_path)
    assert r["call"] == 1


def test_read_results_needs_the_marker(tmp_path):
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": []}]}))
    with pytest.raises(AssertionError, match="GLX_RESULTS"):
        nbrun.read_results(path)
