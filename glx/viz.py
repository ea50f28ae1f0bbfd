"""Plotly figures for the notebooks: training curves, intervals, CKA heatmaps, histograms.

Every builder takes plain data (run histories as lists of record dicts, dicts of numbers, numpy
arrays or torch tensors) and returns a ``plotly.graph_objects.Figure``; none of them shows it
(the notebook displays the returned figure). Nothing here imports the engine: only
:mod:`glx.report` (its intervals, pure statistics) and the record type, :mod:`glx.records`;
figures can be drawn from saved JSON records alone.

A run's history is a list of per-generation records, :class:`glx.records.GenerationRecord`:
``"generation"``, ``"epoch"``, ``"lr"``, ``"child_loss"`` (one value per child),
``"child_acc"``, ``"winner"``, ``"cases_used"``, ``"fallback"``, ``"test_acc"`` (``None`` on
generations without an evaluation)... Missing and ``None`` values are skipped.

:class:`LiveFigure` redraws a run's curves as records arrive (a ``go.FigureWidget`` when the
ipywidgets/anywidget front end is available, an updated display otherwise, nothing at all when
no notebook is running).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from glx import report
from glx.records import GenerationRecord

__all__ = [
    "curves",
    "band_plot",
    "bar_with_ci",
    "heatmap",
    "histograms",
    "scatter_pca",
    "winners",
    "selection_walk",
    "LiveFigure",
]

PALETTE = qualitative.Plotly


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[k:k + 2], 16) for k in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _array(a: Any, name: str) -> np.ndarray:
    """numpy array from an array, list or torch tensor (without importing torch)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: expected numbers, got {type(a).__name__}") from e


def _is_seq(v: Any) -> bool:
    return isinstance(v, (list, tuple, np.ndarray)) or hasattr(v, "detach")


def _flat_floats(v: Any) -> list[float]:
    """The numbers of a list/array/tensor, flattened; None becomes NaN."""
    if hasattr(v, "detach"):
        v = v.detach().cpu().tolist()
    flat = np.asarray(v, dtype=object).reshape(-1)
    return [math.nan if u is None else float(u) for u in flat]


def _scalar(v: Any) -> float | None:
    """A record value as one number: lists (per-child values) give their mean; None skips."""
    if v is None:
        return None
    if _is_seq(v):
        vals = [u for u in _flat_floats(v) if math.isfinite(u)]
        return float(np.mean(vals)) if vals else None
    f = float(v)
    return f if math.isfinite(f) else None


def _t_half_width(std: np.ndarray, count: np.ndarray, level: float) -> np.ndarray:
    """Half width of the Student-t interval (:func:`glx.report.half_width`); NaN below 2 values."""
    return np.asarray(report.half_width(std, count, level), dtype=np.float64)


def _check_level(level: float) -> None:
    if not (isinstance(level, (int, float)) and 0.0 < level < 1.0):
        raise ValueError(f"level: must be in (0, 1), got {level!r}")


# ---------------------------------------------------------------------------------------------
# Runs over time
# ---------------------------------------------------------------------------------------------


def curves(
    runs: Mapping[str, Sequence[GenerationRecord]],
    y: str = "test_acc",
    x: str = "epoch",
    *,
    title: str | None = None,
) -> go.Figure:
    """One line per run: record[y] against record[x] (the record's index when x is missing).

    Records whose ``y`` is missing or ``None`` are skipped; list values (per child) are
    averaged.
    """
    if not isinstance(runs, Mapping):
        raise ValueError(f"runs: expected a dict {{name: history}}, got {type(runs).__name__}")
    fig = go.Figure()
    for i, (name, history) in enumerate(runs.items()):
        xs, ys = [], []
        for k, rec in enumerate(history):
            v = _scalar(rec.get(y))
            if v is None:
                continue
            xs.append(rec.get(x, k) if rec.get(x) is not None else k)
            ys.append(v)
        fig.add_trace(go.Scatter(x=xs, y=ys, name=str(name), mode="lines+markers",
                                 line={"color": _color(i)}, marker={"size": 4}))
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, hovermode="x unified")
    return fig


def band_plot(
    groups: Mapping[str, Sequence[Sequence[float | None]]],
    x: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    *,
    level: float = 0.95,
    title: str | None = None,
    xlabel: str = "epoch",
    ylabel: str | None = None,
) -> go.Figure:
    """Mean across seeds with a ``level`` Student-t band, one (band, mean) pair per group.

    ``groups[name]`` is a list of seeds, each a list of y values over x (``None`` allowed;
    shorter seeds are padded). ``x`` is shared, per group, or the positions 0, 1, ....
    Where fewer than two seeds have a value the band collapses to the mean.
    """
    _check_level(level)
    fig = go.Figure()
    for i, (name, seeds) in enumerate(groups.items()):
        rows = [[np.nan if v is None else float(v) for v in s] for s in seeds]
        if not rows or max(len(r) for r in rows) == 0:
            raise ValueError(f"groups[{name!r}]: has no values")
        width = max(len(r) for r in rows)
        Y = np.full((len(rows), width), np.nan)
        for j, r in enumerate(rows):
            Y[j, :len(r)] = r
        gx = x.get(name) if isinstance(x, Mapping) else x
        xs = np.arange(width) if gx is None else _array(gx, "x")
        if len(xs) != width:
            raise ValueError(f"x: has {len(xs)} positions but groups[{name!r}] has {width}")
        keep = ~np.all(np.isnan(Y), axis=0)
        Y, xs = Y[:, keep], xs[keep]
        count = np.sum(~np.isnan(Y), axis=0)
        mean = np.nanmean(Y, axis=0)
        std = np.array([np.std(c[~np.isnan(c)], ddof=1) if k >= 2 else np.nan
                        for c, k in zip(Y.T, count, strict=True)])
        half = np.nan_to_num(_t_half_width(std, count, level), nan=0.0)
        lo, hi = mean - half, mean + half
        c = _color(i)
        fig.add_trace(go.Scatter(
            x=np.concatenate([xs, xs[::-1]]), y=np.concatenate([hi, lo[::-1]]),
            fill="toself", fillcolor=_rgba(c, 0.2), line={"width": 0}, hoverinfo="skip",
            legendgroup=str(name), showlegend=False, name=f"{name} {int(level * 100)}% CI"))
        fig.add_trace(go.Scatter(
            x=xs, y=mean, name=f"{name} (n={len(rows)})", mode="lines", legendgroup=str(name),
            line={"color": c}, customdata=np.stack([lo, hi], axis=1),
            hovertemplate="%{y:.4g} [%{customdata[0]:.4g}, %{customdata[1]:.4g}]"))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel)
    return fig


def bar_with_ci(
    table: Mapping[str, Sequence[float]],
    title: str | None = None,
    *,
    level: float = 0.95,
    points: bool = True,
    ylabel: str | None = None,
) -> go.Figure:
    """One bar per arm at the mean over seeds, with a ``level`` Student-t error bar.

    With ``points=True`` a second trace shows every seed's value. An arm with one value has
    no error bar.
    """
    _check_level(level)
    names, means, up, down, xs_pts, ys_pts = [], [], [], [], [], []
    for name, values in table.items():
        vals = [float(v) for v in values if v is not None]
        if not vals:
            raise ValueError(f"table[{name!r}]: has no values")
        a = np.asarray(vals)
        m = float(a.mean())
        std = np.array([a.std(ddof=1) if a.size >= 2 else np.nan])
        half = float(_t_half_width(std, np.array([a.size]), level)[0])
        names.append(str(name))
        means.append(m)
        up.append(half)
        down.append(half)
        xs_pts += [str(name)] * a.size
        ys_pts += vals
    fig = go.Figure(go.Bar(
        x=names, y=means, name=f"mean ± {int(level * 100)}% CI",
        error_y={"type": "data", "symmetric": False, "array": up, "arrayminus": down},
        marker={"color": [_color(i) for i in range(len(names))]}))
    if points:
        fig.add_trace(go.Scatter(x=xs_pts, y=ys_pts, mode="markers", name="seeds",
                                 marker={"color": "black", "size": 6, "opacity": 0.6}))
    fig.update_layout(title=title, yaxis_title=ylabel, showlegend=points)
    return fig


# ---------------------------------------------------------------------------------------------
# Representations
# ---------------------------------------------------------------------------------------------


def heatmap(
    matrix: Any,
    labels_x: Sequence[Any] | None = None,
    labels_y: Sequence[Any] | None = None,
    title: str | None = None,
    zmin: float | None = 0,
    zmax: float | None = 1,
    *,
    text: bool = True,
    colorscale: str = "Viridis",
) -> go.Figure:
    """A matrix (e.g. CKA, rows = ``labels_y``, columns = ``labels_x``) with row 0 on top."""
    z = _array(matrix, "matrix")
    if z.ndim != 2:
        raise ValueError(f"matrix: expected 2-D, got shape {z.shape}")
    lx = [str(v) for v in (labels_x if labels_x is not None else range(z.shape[1]))]
    ly = [str(v) for v in (labels_y if labels_y is not None else range(z.shape[0]))]
    if len(lx) != z.shape[1] or len(ly) != z.shape[0]:
        raise ValueError(f"labels_x, labels_y: {len(lx)} x-labels and {len(ly)} y-labels do "
                         f"not fit a matrix of shape {z.shape}")
    fig = go.Figure(go.Heatmap(z=z, x=lx, y=ly, zmin=zmin, zmax=zmax, colorscale=colorscale,
                               texttemplate="%{z:.2f}" if text else None))
    fig.update_layout(title=title, yaxis={"autorange": "reversed"})
    return fig


def histograms(
    hists: Mapping[str, tuple[Any, Any]],
    log: bool = True,
    *,
    title: str | None = None,
    xlabel: str = "activation value",
) -> go.Figure:
    """Overlaid step histograms, one per entry ``name: (counts, edges)``, log y axis by default.

    The paper's representation figure: log frequency against activation value. Pass raw
    counts; empty bins leave a gap on the log axis.
    """
    fig = go.Figure()
    for i, (name, pair) in enumerate(hists.items()):
        counts, edges = (_array(v, f"hists[{name!r}]") for v in pair)
        if counts.ndim != 1 or edges.shape != (counts.size + 1,):
            raise ValueError(f"hists[{name!r}]: needs counts (k,) and edges (k + 1,), got "
                             f"{counts.shape} and {edges.shape}")
        ys = np.append(counts, counts[-1]).astype(object)
        bad = ~np.isfinite(ys.astype(np.float64)) | ((ys.astype(np.float64) <= 0) & log)
        ys[bad] = None
        fig.add_trace(go.Scatter(x=edges, y=ys, name=str(name), mode="lines", line_shape="hv",
                                 line={"color": _color(i)}))
    fig.update_layout(title=title, xaxis_title=xlabel,
                      yaxis_title="count (log)" if log else "count")
    if log:
        fig.update_yaxes(type="log")
    return fig


def scatter_pca(
    proj: Mapping[str, Any] | Sequence[Any],
    labels: Mapping[str, Any] | Any | None = None,
    *,
    class_names: Sequence[str] | None = None,
    explained: Sequence[float] | None = None,
    title: str | None = None,
) -> go.Figure:
    """One panel per model on shared axes, the first two coordinates of ``proj[model]``.

    ``labels`` (one array shared by all models, or one per model) colours the points by class,
    one trace per (model, class) with a single legend entry per class; without labels, one
    trace per model. ``explained`` (explained variance ratios) labels the axes.
    """
    items = list(proj.items()) if isinstance(proj, Mapping) else [
        (str(i), p) for i, p in enumerate(proj)]
    if not items:
        raise ValueError("proj: is empty")
    pts = {}
    for name, p in items:
        a = _array(p, f"proj[{name!r}]")
        if a.ndim != 2 or a.shape[1] < 2:
            raise ValueError(f"proj[{name!r}]: expected (n, >= 2) coordinates, got {a.shape}")
        pts[name] = a
    labs: dict[Any, np.ndarray] = {}
    if labels is not None:
        for name, a in pts.items():
            lab = labels[name] if isinstance(labels, Mapping) else labels
            lab = np.asarray(lab.detach().cpu() if hasattr(lab, "detach") else lab).reshape(-1)
            if lab.size != a.shape[0]:
                raise ValueError(f"labels: {lab.size} labels for proj[{name!r}] with "
                                 f"{a.shape[0]} points")
            labs[name] = lab
    classes = sorted({v.item() for lab in labs.values() for v in np.unique(lab)})

    fig = make_subplots(rows=1, cols=len(pts), shared_xaxes=True, shared_yaxes=True,
                        subplot_titles=[str(n) for n in pts])
    for col, (name, a) in enumerate(pts.items(), start=1):
        if not labs:
            fig.add_trace(go.Scattergl(x=a[:, 0], y=a[:, 1], mode="markers", name=str(name),
                                       marker={"size": 4, "color": _color(col - 1)}),
                          row=1, col=col)
            continue
        for ci, c in enumerate(classes):
            mask = labs[name] == c
            cname = str(class_names[int(c)]) if class_names is not None else str(c)
            fig.add_trace(go.Scattergl(
                x=a[mask, 0], y=a[mask, 1], mode="markers", name=cname, legendgroup=cname,
                showlegend=col == 1, marker={"size": 4, "color": _color(ci), "opacity": 0.7}),
                row=1, col=col)
    ax = [f"PC{k + 1}" + (f" ({100 * explained[k]:.1f}%)" if explained is not None else "")
          for k in range(2)]
    fig.update_xaxes(title_text=ax[0], matches="x")  # every panel on the same axes
    fig.update_yaxes(title_text=ax[1], col=1)
    fig.update_layout(title=title)
    return fig


# ---------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------


def winners(history: Sequence[GenerationRecord], *, title: str | None = None) -> go.Figure:
    """Which child won each generation (top) and how many cases selection used (bottom).

    A winner picked by the random fallback (the record's ``fallback``) is drawn as a cross.
    """
    gens, wins, symbols, gens_c, cases = [], [], [], [], []
    for k, rec in enumerate(history):
        g = rec.get("generation", k)
        if rec.get("winner") is not None:
            gens.append(g)
            wins.append(int(rec["winner"]))
            symbols.append("x" if rec.get("fallback") else "circle")
        if rec.get("cases_used") is not None:
            gens_c.append(g)
            cases.append(rec["cases_used"])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("winning child", "cases used by selection"))
    fig.add_trace(go.Scatter(x=gens, y=wins, mode="markers", name="winner",
                             marker={"symbol": symbols, "size": 6, "color": _color(0)}),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=gens_c, y=cases, mode="lines+markers", name="cases used",
                             marker={"size": 3, "color": _color(1)}), row=2, col=1)
    fig.update_yaxes(title_text="child", dtick=1, row=1, col=1)
    fig.update_yaxes(title_text="cases", row=2, col=1)
    fig.update_xaxes(title_text="generation", row=2, col=1)
    fig.update_layout(title=title, showlegend=False)
    return fig


def selection_walk(
    scores: Any,
    order: Sequence[int] | None = None,
    pools: Sequence[Iterable[int]] | None = None,
    *,
    title: str | None = None,
) -> go.Figure:
    """A lexicase selection step by step: the case matrix and the surviving pool.

    ``scores`` is ``(p candidates, n cases)``; the columns are drawn in ``order`` (default:
    as given), so column k is the k-th case considered. ``pools[k]`` lists the candidates left
    after case k; they are marked on the matrix (second trace).
    """
    S = _array(scores, "scores")
    if S.ndim != 2:
        raise ValueError(f"scores: expected (candidates, cases), got shape {S.shape}")
    p, n = S.shape
    order_a = np.arange(n) if order is None else np.asarray(list(order), dtype=np.int64)
    if order_a.size and (order_a.min() < 0 or order_a.max() >= n):
        raise ValueError(f"order: case indices must lie in [0, {n}), got min {order_a.min()} "
                         f"and max {order_a.max()}")
    Z = S[:, order_a]
    steps = np.arange(order_a.size)
    fig = go.Figure(go.Heatmap(
        z=Z, x=steps, y=np.arange(p), colorscale="Blues", showscale=False, name="scores",
        customdata=np.broadcast_to(order_a, Z.shape),
        hovertemplate="step %{x}, case %{customdata}<br>candidate %{y}: %{z}<extra></extra>"))
    if pools is not None:
        pools = [list(pl) for pl in pools]
        if len(pools) > order_a.size:
            raise ValueError(f"pools: {len(pools)} steps but only {order_a.size} cases in order")
        xs = [k for k, pl in enumerate(pools) for _ in pl]
        ys = [int(c) for pl in pools for c in pl]
        if ys and (min(ys) < 0 or max(ys) >= p):
            raise ValueError(f"pools: candidates must lie in [0, {p}), got {sorted(set(ys))}")
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="pool",
                                 marker={"symbol": "circle-open", "size": 10, "color": "orange",
                                         "line": {"width": 2}}))
    fig.update_layout(title=title, xaxis_title="step (case in selection order)",
                      yaxis={"title": "candidate", "autorange": "reversed", "dtick": 1})
    return fig


# ---------------------------------------------------------------------------------------------
# Live training curves
# ---------------------------------------------------------------------------------------------

MODES = ("auto", "widget", "display", "none")


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and hasattr(ip, "kernel")


class LiveFigure:
    """Training curves that redraw as records arrive: ``update(history)`` or ``live(record)``.

    One subplot row per key in ``keys``; a key whose values are lists (``child_loss``) gets one
    line per element. ``mode``: ``"widget"`` (``go.FigureWidget``, updated in place; needs the
    widget front end), ``"display"`` (a plain figure re-rendered in its output cell, at most
    every ``min_interval`` seconds), ``"none"`` (only the figure data; nothing is drawn until
    :meth:`show`), or ``"auto"``: widget when it can be built in a notebook kernel, else
    display in a kernel, else none. Headless runs (papermill, scripts, tests) never fail.

    Use as a trainer callback: ``glx.gls.train(cfg, callbacks=[live])`` (``live(record,
    trainer)`` appends the record).
    """

    def __init__(
        self,
        keys: Sequence[str] = ("child_loss", "test_acc"),
        x: str = "generation",
        *,
        title: str | None = None,
        mode: str = "auto",
        min_interval: float = 0.5,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: must be one of {MODES}, got {mode!r}")
        keys = [keys] if isinstance(keys, str) else list(keys)
        if not keys:
            raise ValueError("keys: give at least one record key to plot")
        self.keys, self.x, self.min_interval = keys, x, float(min_interval)
        self.history: list[Mapping[str, Any]] = []
        base = make_subplots(rows=len(keys), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                             subplot_titles=keys)
        base.update_layout(title=title, height=260 * len(keys) + 60, showlegend=True)
        base.update_xaxes(title_text=x, row=len(keys), col=1)
        if mode == "auto":
            mode = "widget" if _in_kernel() else "none"
        self.figure: go.Figure = base
        if mode == "widget":
            try:
                self.figure = go.FigureWidget(base)
            except Exception:  # no anywidget/ipywidgets front end: redraw the output instead
                mode = "display" if _in_kernel() else "none"
        self.mode = mode
        self._traces: dict[tuple[str, int | None], int] = {}
        self._handle: Any = None
        self._last_draw = -math.inf

    # -- data -----------------------------------------------------------------------------------

    def _series(self, key: str) -> dict[int | None, tuple[list[Any], list[float]]]:
        out: dict[int | None, tuple[list[Any], list[float]]] = {}
        for k, rec in enumerate(self.history):
            v = rec.get(key)
            if v is None:
                continue
            xv = rec.get(self.x, k)
            if _is_seq(v):
                for j, u in enumerate(_flat_floats(v)):
                    if math.isfinite(u):
                        out.setdefault(j, ([], []))[0].append(xv)
                        out[j][1].append(float(u))
            elif math.isfinite(float(v)):
                out.setdefault(None, ([], []))[0].append(xv)
                out[None][1].append(float(v))
        return out

    def _redraw_data(self) -> None:
        with self.figure.batch_update():
            for row, key in enumerate(self.keys, start=1):
                for j, (xs, ys) in sorted(self._series(key).items(),
                                          key=lambda kv: -1 if kv[0] is None else kv[0]):
                    idx = self._traces.get((key, j))
                    if idx is None:
                        name = key if j is None else f"{key}[{j}]"
                        color = _color(j if j is not None else row - 1)
                        self.figure.add_trace(go.Scatter(
                            x=[], y=[], mode="lines", name=name, legendgroup=key,
                            line={"color": color}), row=row, col=1)
                        idx = len(self.figure.data) - 1
                        self._traces[(key, j)] = idx
                    self.figure.data[idx].x = xs
                    self.figure.data[idx].y = ys

    def update(self, history: Sequence[Mapping[str, Any]], *, force: bool = False) -> None:
        """Replace the data by ``history`` (all records so far) and redraw."""
        self.history = list(history)
        self._redraw_data()
        self._refresh(force)

    def __call__(self, record: Mapping[str, Any], trainer: Any = None) -> None:
        """Append one record (the trainer's callback signature) and redraw."""
        self.history.append(record)
        self._redraw_data()
        self._refresh(False)

    # -- drawing --------------------------------------------------------------------------------

    def _refresh(self, force: bool) -> None:
        # A widget redraws itself; a display needs re-sending, throttled to spare the notebook.
        if self.mode != "display" or self._handle is None:
            return
        now = time.monotonic()
        if force or now - self._last_draw >= self.min_interval:
            self._handle.update(self._bundle(), raw=True)
            self._last_draw = now

    def _bundle(self) -> dict[str, Any]:
        # Plotly figures display themselves through _ipython_display_, which ignores display
        # ids; handing IPython the raw MIME bundle lets later updates replace the output.
        bundle = self.figure._repr_mimebundle_()
        if not bundle:  # no renderer configured (outside a notebook)
            bundle = {"application/vnd.plotly.v1+json": json.loads(self.figure.to_json())}
        return bundle

    def flush(self) -> None:
        """Redraw now, ignoring ``min_interval`` (call after the last record)."""
        self._refresh(True)

    def display(self) -> None:
        """Show the figure in the current output cell (no-op when ``mode="none"``)."""
        if self.mode == "none":
            return
        from IPython.display import display

        if self.mode == "widget":
            display(self.figure)
        else:
            self._handle = display(self._bundle(), raw=True, display_id=True)
            self._last_draw = time.monotonic()

    def _ipython_display_(self) -> None:
        if self.mode == "none":
            from IPython.display import display

            display(self.figure)
        else:
            self.display()

    def show(self) -> None:
        """Render the current figure (for ``mode="none"`` or scripts)."""
        self.figure.show()
