"""Every chapter executed headlessly (papermill, SMOKE mode), asserting on what it computed.

Each notebook's last cell checks its own results and prints ``GLX_RESULTS {json}``; here the
values are read back from the executed notebook and checked again, so a notebook that runs but
computes nonsense fails.
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
    assert r["empirical_max_abs_dev"] < 0.03
    assert abs(r["as_released_freq0"] - 0.09) < 0.03
    assert abs(r["standard_freq0"] - 0.25) < 0.03
