"""glx.widgets built headlessly: controls set from code, the Run button clicked from code."""

from __future__ import annotations

import subprocess
import sys

import ipywidgets as W
import pytest

from glx import data as gdata
from glx import gls, widgets


@pytest.fixture(scope="module")
def digits():
    return gdata.load("digits")


def tiny_base(**kw) -> gls.Config:
    base = dict(dataset="digits", model="mlp", pop=2, generations=4, batch_size=32, seed=0,
                device="cpu", subset=400, test_subset=200)
    base.update(kw)
    return gls.Config(**base)


def test_import_is_headless_and_engine_does_not_import_widgets():
    code = ("import sys, glx.gls, glx.population, glx.select, glx.data, glx.models, glx.viz; "
            "assert 'glx.widgets' not in sys.modules; import glx.widgets; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_controls_start_from_base_config():
    panel = widgets.training_panel(base=tiny_base(momentum=0.5, momentum_policy="inherit"),
                                   progress=False)
    cfg = panel.config()
    assert (cfg.pop, cfg.momentum, cfg.momentum_policy, cfg.generations) == (2, 0.5, "inherit", 4)
    assert set(panel.selection.options) == set(gls.SELECTIONS)
    assert set(panel.momentum_policy.options) == {"reset", "inherit"}
    assert isinstance(panel.widget, W.VBox)
    # the status line states the SGD budget the match implies
    panel.generations.value, panel.pop.value, panel.match.value = 50, 4, "compute"
    assert "about 50 epochs (matched on compute, in optimizer steps)" in panel.status.value
    panel.generations.value, panel.match.value = 5, "lineage"
    assert "about 1.25 epochs (matched on lineage" in panel.status.value  # not rounded


def test_click_trains_gls_and_matched_sgd(digits):
    panel = widgets.training_panel(digits, base=tiny_base(), progress=False, live="none")
    panel.pop.value = 3
    panel.momentum.value = 0.8
    panel.momentum_policy.value = "inherit"
    panel.lr.value = 0.05
    panel.selection.value = "tournament"
    panel.generations.value = 5
    panel.match.value = "lineage"
    panel.button.click()  # the handler a click in the browser would run
    assert panel.error is None, panel.error
    g, s = panel.runs["gls"], panel.runs["sgd"]
    assert g.config["pop"] == 3 and g.config["selection"] == "tournament"
    assert g.config["momentum"] == pytest.approx(0.8)
    assert g.config["momentum_policy"] == "inherit"
    assert g.config["lr"] == pytest.approx(0.05, rel=1e-6)
    assert len(g.history) == 5
    assert all(0 <= r["winner"] < 3 for r in g.history)
    assert s.config["method"] == "sgd" and s.config["pop"] == 1
    sgd = gls.matched_sgd(g_cfg := gls.Config.from_dict(g.config), "lineage",
                          gls.training_images(g_cfg, panel.data))
    assert s.config["steps"] == sgd.steps == gls.budget(5, 3, sgd_n := gls.training_images(
        g_cfg, panel.data), g_cfg.batch_size)["lineage"]["steps"] and sgd_n > 0
    assert sum(r["steps"] for r in s.history) == sgd.steps
    assert len(s.history) == sgd.generations
    for run in (g, s):
        assert 0.0 <= run.test_accuracy <= 1.0
    # the live curves received every record (one x value per generation)
    fig = panel.live["gls"].figure_live.figure
    loss = [t for t in fig.data if t.name == "train_loss"][0]
    assert len(loss.x) == 5
    summary = panel.summary()
    assert summary["gls_generations"] == 5 and summary["sgd_generations"] == sgd.generations
    assert summary["selection"]["chance"] == pytest.approx(1 / 3)
    assert sum(summary["selection"]["winner_counts"]) == 5
    assert "GLS" in panel.status.value and "%" in panel.status.value


def test_lexicase_run_learns_and_reports_deciding_share(digits):
    panel = widgets.training_panel(digits, base=tiny_base(generations=12, subset=0,
                                                          test_subset=0, batch_size=64),
                                   progress=True, live="none", baseline=False)
    panel.pop.value = 4
    runs = panel.run()
    assert panel.progress_bar.value == panel.progress_bar.max == 12
    assert set(runs) == {"gls"}
    assert runs["gls"].test_accuracy > 0.8  # chance is 0.1
    sel = panel.summary()["selection"]
    share = sel["winner_trained_on_deciding_share"]
    assert sel["decided"] > 0 and 0.0 <= share <= 1.0
    assert sel["decided"] + sel["fallbacks"] <= 12


def test_failed_click_is_reported_not_raised(digits):
    # a child's share of 400 images at p=8 is 50, smaller than the batch of 64
    panel = widgets.training_panel(digits, base=tiny_base(batch_size=64), progress=False,
                                   live="none")
    panel.pop.value = 8
    panel.button.click()
    assert isinstance(panel.error, ValueError)
    assert "batch_size" in panel.status.value and "failed" in panel.status.value
    assert not panel.button.disabled
    with pytest.raises(ValueError, match="batch_size"):
        panel.run()  # called directly, the error propagates


def test_run_summary_counts():
    hist = [
        {"winner": 1, "cases_used": 4, "deciding_child": 1, "winner_trained_on_deciding": True,
         "fallback": False},
        {"winner": 0, "cases_used": 6, "deciding_child": 2, "winner_trained_on_deciding": False,
         "fallback": False},
        {"winner": 0, "cases_used": 10, "deciding_child": None,
         "winner_trained_on_deciding": None, "fallback": True},
    ]
    s = widgets.run_summary(hist, pop=4)
    assert s["decided"] == 2 and s["winner_trained_on_deciding"] == 1
    assert s["winner_trained_on_deciding_share"] == 0.5 and s["fallbacks"] == 1
    assert s["mean_cases_used"] == pytest.approx(20 / 3)
    assert s["winner_counts"] == [2, 1, 0, 0] and s["chance"] == 0.25


def test_slider_panel_recomputes_on_change():
    seen = []

    def fn(p, momentum, policy):
        seen.append((p, momentum, policy))
        return f"<b>{p}</b>"

    panel = widgets.slider_panel(fn, p=(2, 8), momentum=(0.0, 0.9, 0.1),
                                 policy=["reset", "inherit"])
    assert seen == [(2, 0.0, "reset")] and panel.calls == 1
    assert isinstance(panel.controls["p"], W.IntSlider)
    assert isinstance(panel.controls["momentum"], W.FloatSlider)
    assert panel.controls["p"].continuous_update is False
    panel.controls["p"].value = 6
    panel.controls["policy"].value = "inherit"
    assert seen[-1] == (6, 0.0, "inherit") and panel.calls == 3
    assert panel.result == "<b>6</b>"


def test_slider_panel_keeps_errors_and_rejects_bad_specs():
    def fn(p):
        if p > 3:
            raise RuntimeError("too many")
        return None

    panel = widgets.slider_panel(fn, p=W.IntSlider(value=2, min=1, max=5))
    panel.controls["p"].value = 5
    assert isinstance(panel.error, RuntimeError) and "too many" in panel.status.value
    with pytest.raises(ValueError, match="expected a widget"):
        widgets.slider_panel(fn, p="nope")
