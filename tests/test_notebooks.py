"""Every chapter executed headlessly (papermill, SMOKE mode), asserting on what it computed.

Each notebook's last cell (tagged ``remove-cell``, so hidden in the book) prints the values it
computed as one line ``GLX_RESULTS {json}``; here they are read back from the executed notebook
and checked, so a notebook that runs but computes nonsense fails.
"""

from __future__ import annotations

import math

import pytest

from tests.nbrun import execute

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("notebooks")


def _prob(x):
    return isinstance(x, (int, float)) and 0.0 <= x <= 1.0 and math.isfinite(x)


def test_01_lexicase_selection(out_dir):
    r, _ = execute("01_lexicase_selection.ipynb", out_dir)
    probs = r["hand_probabilities"]
    assert abs(sum(probs) - 1) < 1e-9 and all(_prob(p) for p in probs)
    assert r["walk_winner_matches"] is True  # glx.select agrees with the hand-written walk
    assert r["empirical_max_abs_dev"] < 0.03
    # the specialist survives only under lexicase
    spec = r["specialist"]
    assert spec["lexicase"] > 0.1
    assert spec["tournament (size 2)"] == 0 and spec["best aggregate"] == 0
    # the released loop's long-run share of child 0 is exactly 29/315
    assert abs(r["as_released_limit0"] - 29 / 315) < 1e-12
    assert abs(r["as_released_freq0"] - r["as_released_limit0"]) < 0.03
    assert abs(r["standard_freq0"] - 0.25) < 0.03
    # leaving cases out makes the specialist vanish from more generations
    down = r["downsample"]
    assert (down["0.25"]["generations without the specialist"]
            > down["1.0"]["generations without the specialist"])
    for v in r["epsilon_modes"].values():
        assert abs(sum(v) - 1) < 1e-9


def _nbval(path):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(path.parent), str(path)],
        capture_output=True, text=True, cwd=str(path.parent), timeout=600)


def test_01_marked_cells_reproduce_under_nbval(out_dir):
    """nbval re-runs the executed chapter and compares the cells marked NBVAL_CHECK_OUTPUT."""
    import json

    path = out_dir / "01_lexicase_selection.ipynb"
    if not path.exists():
        execute("01_lexicase_selection.ipynb", out_dir)
    nb = json.loads(path.read_text())
    marked = [c for c in nb["cells"] if "NBVAL_CHECK_OUTPUT" in "".join(c["source"])]
    assert marked and all(c.get("outputs") for c in marked)
    ok = _nbval(path)
    assert ok.returncode == 0, ok.stdout[-3000:]

    # The check can fail: a changed printout in a marked cell is reported.
    for out in marked[0]["outputs"]:
        if out.get("output_type") == "stream":
            out["text"] = "StreamResult(winner=99)\n"
    bad = out_dir / "tampered" / path.name
    bad.parent.mkdir(exist_ok=True)
    bad.write_text(json.dumps(nb))
    assert _nbval(bad).returncode != 0
