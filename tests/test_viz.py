"""Tests of glx.viz: each builder returns a Figure whose traces carry the input data."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest
from scipy import stats

from glx import viz


def history(n: int, p: int = 3, eval_every: int = 2, offset: float = 0.0) -> list[dict]:
    """Records shaped like the trainer's (test_acc only on every eval_every-th generation)."""
    recs = []
    for g in range(n):
        recs.append({
            "generation": g,
            "epoch": g + 1,
            "lr": 0.1 * (1 - g / n),
            "child_loss": [2.0 - 0.1 * g + 0.01 * c + offset for c in range(p)],
            "child_acc": [0.1 * g + 0.02 * c for c in range(p)],
            "winner": g % p,
            "cases_used": 3 + g,
            "fallback": g == 1,
            "test_acc": 0.5 + 0.01 * g + offset if (g + 1) % eval_every == 0 else None,
        })
    return recs


def test_curves_one_trace_per_run_and_none_skipped():
    runs = {"gls": history(6), "sgd": history(6, offset=0.1)}
    fig = viz.curves(runs)
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    gls = fig.data[0]
    assert gls.name == "gls"
    assert list(gls.x) == [2, 4, 6]  # epochs of the evaluated generations only
    assert list(gls.y) == pytest.approx([0.51, 0.53, 0.55])
    # list-valued keys are averaged over children
    fig = viz.curves({"gls": history(3)}, y="child_loss", x="generation")
    assert list(fig.data[0].y) == pytest.approx([2.01, 1.91, 1.81])


def test_band_plot_mean_and_t_interval():
    seeds = [[1.0, 2.0, 3.0], [3.0, 4.0, None], [2.0, 6.0]]
    fig = viz.band_plot({"gls": seeds, "sgd": [[0.0, 0.0, 0.0]]}, x=[10, 20, 30])
    assert len(fig.data) == 4  # (band, mean) per group
    band, mean = fig.data[0], fig.data[1]
    assert list(mean.x) == [10, 20, 30]
    assert list(mean.y) == pytest.approx([2.0, 4.0, 3.0])
    half0 = stats.t.ppf(0.975, 2) * np.std([1.0, 3.0, 2.0], ddof=1) / math.sqrt(3)
    # the band runs along hi, then back along lo
    assert band.y[0] == pytest.approx(2.0 + half0)
    assert band.y[-1] == pytest.approx(2.0 - half0)
    assert band.y[2] == pytest.approx(3.0) and band.y[3] == pytest.approx(3.0)  # one seed: no band
    assert fig.data[3].name.startswith("sgd")
    with pytest.raises(ValueError, match="x: has 2 positions"):
        viz.band_plot({"a": seeds}, x=[1, 2])


def test_bar_with_ci_bars_error_bars_and_points():
    table = {"SGD": [92.8, 92.9, 93.0], "GLS": [93.4, 93.2, 93.6, 93.5], "one": [90.0]}
    fig = viz.bar_with_ci(table, "accuracy")
    assert len(fig.data) == 2
    bar, pts = fig.data
    assert list(bar.x) == ["SGD", "GLS", "one"]
    assert list(bar.y) == pytest.approx([92.9, 93.425, 90.0])
    vals = np.array(table["GLS"])
    half = stats.t.ppf(0.975, 3) * vals.std(ddof=1) / 2.0
    assert bar.error_y.array[1] == pytest.approx(half)
    assert bar.error_y.arrayminus[1] == pytest.approx(half)
    assert math.isnan(bar.error_y.array[2])  # one seed: no interval
    assert list(pts.y) == [92.8, 92.9, 93.0, 93.4, 93.2, 93.6, 93.5, 90.0]
    assert len(viz.bar_with_ci(table, points=False).data) == 1
    # a wider level, a wider bar
    wide = viz.bar_with_ci(table, level=0.99).data[0].error_y.array[1]
    assert wide > half


def test_heatmap_takes_the_matrix_and_labels():
    m = np.array([[1.0, 0.3, 0.2], [0.3, 1.0, 0.5]])
    fig = viz.heatmap(m, ["a", "b", "c"], ["x", "y"], "CKA")
    assert len(fig.data) == 1
    hm = fig.data[0]
    np.testing.assert_array_equal(np.asarray(hm.z), m)
    assert list(hm.x) == ["a", "b", "c"] and list(hm.y) == ["x", "y"]
    assert (hm.zmin, hm.zmax) == (0, 1)
    with pytest.raises(ValueError, match="labels"):
        viz.heatmap(m, ["a", "b"], ["x", "y"])


def test_histograms_step_traces_log_axis():
    counts = np.array([5.0, 0.0, 2.0])
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    fig = viz.histograms({"SGD": (counts, edges), "GLS": (counts * 2, edges)})
    assert len(fig.data) == 2
    s = fig.data[0]
    assert list(s.x) == [0.0, 1.0, 2.0, 3.0]
    assert list(s.y) == [5.0, None, 2.0, 2.0]  # empty bin is a gap on the log axis
    assert s.line.shape == "hv"
    assert fig.layout.yaxis.type == "log"
    lin = viz.histograms({"SGD": (counts, edges)}, log=False)
    assert list(lin.data[0].y) == [5.0, 0.0, 2.0, 2.0] and lin.layout.yaxis.type != "log"
    with pytest.raises(ValueError, match="edges"):
        viz.histograms({"bad": (counts, edges[:3])})


def test_scatter_pca_panels_and_classes():
    rng = np.random.default_rng(0)
    proj = {"sgd": rng.normal(size=(20, 2)), "gls": rng.normal(size=(20, 2))}
    labels = np.array([0, 1, 2, 3] * 5)
    fig = viz.scatter_pca(proj, labels, class_names=["a", "b", "c", "d"],
                          explained=[0.5, 0.2])
    assert len(fig.data) == 2 * 4  # (model, class)
    first = fig.data[0]
    np.testing.assert_allclose(first.x, proj["sgd"][labels == 0, 0])
    assert first.name == "a" and first.showlegend
    assert not fig.data[4].showlegend  # one legend entry per class
    assert fig.data[4].xaxis == "x2"
    assert "50.0%" in fig.layout.xaxis.title.text
    assert len(viz.scatter_pca(proj).data) == 2
    with pytest.raises(ValueError, match="labels"):
        viz.scatter_pca(proj, labels[:5])


def test_winners_and_selection_walk():
    h = history(5) + [{"generation": 5, "winner": None, "cases_used": None, "test_acc": 0.7}]
    fig = viz.winners(h)
    assert len(fig.data) == 2
    assert list(fig.data[0].x) == [0, 1, 2, 3, 4]
    assert list(fig.data[0].y) == [0, 1, 2, 0, 1]
    assert list(fig.data[0].marker.symbol) == ["circle", "x", "circle", "circle", "circle"]
    assert list(fig.data[1].y) == [3, 4, 5, 6, 7]
    # a record's "fallback" marks a random-draw winner; nothing else does
    trainer_like = [{"generation": 0, "winner": 2, "cases_used": 9, "fallback": True},
                    {"generation": 1, "winner": 1, "cases_used": 3, "fallback": False}]
    assert list(viz.winners(trainer_like).data[0].marker.symbol) == ["x", "circle"]
    legacy = [{"generation": 0, "winner": 2, "cases_used": 9, "deciding_case": None}]
    assert list(viz.winners(legacy).data[0].marker.symbol) == ["circle"]

    scores = np.array([[1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 1]])
    fig = viz.selection_walk(scores, order=[2, 0, 1], pools=[[0, 2], [0]])
    assert len(fig.data) == 2
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), scores[:, [2, 0, 1]])
    assert list(fig.data[1].x) == [0, 0, 1] and list(fig.data[1].y) == [0, 2, 0]
    assert len(viz.selection_walk(scores).data) == 1
    with pytest.raises(ValueError, match="order"):
        viz.selection_walk(scores, order=[4])


def test_live_figure_updates_headless():
    live = viz.LiveFigure(keys=("child_loss", "test_acc"), mode="auto")
    assert live.mode == "none"  # no notebook kernel under pytest
    h = history(4, p=2)
    live.update(h[:2])
    assert len(live.figure.data) == 3  # child_loss[0], child_loss[1], test_acc
    live.update(h)
    assert len(live.figure.data) == 3  # traces are reused, not added again
    by_name = {t.name: t for t in live.figure.data}
    assert list(by_name["child_loss[1]"].y) == pytest.approx([r["child_loss"][1] for r in h])
    assert list(by_name["test_acc"].x) == [1, 3]  # None skipped
    live({"generation": 4, "child_loss": [0.5, 0.4], "test_acc": 0.9}, None)  # callback form
    assert list(by_name["test_acc"].y)[-1] == pytest.approx(0.9)
    assert len(live.history) == 5
    live.display()
    live.flush()  # nothing to draw headless; must not fail


def test_live_figure_display_mode_without_a_front_end(capsys):
    live = viz.LiveFigure(keys="test_acc", mode="display", min_interval=0.0)
    live.display()
    live.update(history(4))
    live.flush()
    assert list(live.figure.data[0].y) == pytest.approx([0.51, 0.53])
    with pytest.raises(ValueError, match="mode"):
        viz.LiveFigure(mode="screen")
