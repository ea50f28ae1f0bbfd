"""ipywidgets panels for the notebooks: controls -> ``glx.gls`` -> ``glx.viz``.

Two panels, both built from plain ipywidgets and both usable without a front end:

* :class:`TrainingPanel` (:func:`training_panel`): controls for the population size, the
  momentum value and its carry-over policy, the learning rate, the selection operator, the
  number of generations, the seed and the SGD baseline's budget; a **Run** button trains a
  GLS run and (optionally) an SGD baseline matched to it (:func:`glx.gls.matched_sgd`), with
  live curves (:class:`glx.viz.LiveFigure`) while they train and a short summary after.
* :class:`SliderPanel` (:func:`slider_panel`): any function of a few controls, recomputed and
  redrawn when a control changes (chapter 2 uses it for one generation of subset gradient
  descent as a function of population size and momentum).

Headless (papermill, scripts, tests) nothing gets clicked, but everything can be driven from
code: set a control's ``value`` and call :meth:`TrainingPanel.run` (or ``panel.button.click()``),
then read ``panel.runs`` and :meth:`TrainingPanel.summary`. Nothing is drawn when no kernel is
running. The engine never imports this module.

Outputs go into ``Output`` widgets by setting their ``outputs`` state, never by capturing
(``with output:``): under papermill/nbclient, capture makes the client echo every captured
output back to the kernel as comm messages while the cell runs, and with ipykernel 7 that
intermittently left cells "running" after they had finished (reproduced here with nbclient
0.11 and ipykernel 7.4). Progress is an ``IntProgress`` bar of the panel for the same reason.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as W

from glx import gls, viz
from glx.records import GenerationRecord
from glx.viz import _in_kernel  # one definition of "inside a notebook kernel"

__all__ = ["TrainingPanel", "training_panel", "SliderPanel", "slider_panel", "run_summary"]

# Keys drawn live, one subplot row each; x is the epochs of gradient work so far, which puts
# GLS (one epoch of gradient work a generation) and SGD on the same axis.
LIVE_KEYS = ("train_loss", "test_acc")
LIVE_X = "epoch"


def _display(obj: Any) -> None:
    # Outside a kernel IPython's display prints reprs to stdout: noise in tests and scripts.
    if _in_kernel():
        from IPython.display import display

        display(obj)


def _output_item(obj: Any) -> dict[str, Any]:
    """One ``display_data`` entry for an Output widget's ``outputs`` (kernel only)."""
    from IPython import get_ipython

    if hasattr(obj, "to_json") and hasattr(obj, "_repr_mimebundle_") and \
            not hasattr(obj, "_model_id"):
        # A plotly figure: its MIME bundle, or the plotly JSON when no renderer is configured.
        data = obj._repr_mimebundle_() or {
            "application/vnd.plotly.v1+json": json.loads(obj.to_json())}
        return {"output_type": "display_data", "data": data, "metadata": {}}
    data, metadata = get_ipython().display_formatter.format(obj)
    return {"output_type": "display_data", "data": data, "metadata": metadata}


def _show(output: W.Output, *objs: Any, append: bool = False) -> None:
    """Show ``objs`` in ``output`` by setting its state (see the module docstring: no capture)."""
    if not _in_kernel():
        return
    items = tuple(_output_item(o) for o in objs if o is not None)
    output.outputs = (output.outputs + items) if append else items


def _show_text(output: W.Output, text: str, name: str = "stderr") -> None:
    if _in_kernel():
        output.outputs = output.outputs + (
            {"output_type": "stream", "name": name, "text": text},)


def run_summary(history: Sequence[GenerationRecord], pop: int) -> dict[str, Any]:
    """Selection statistics of one GLS history (what the panel and chapter 3 report).

    ``winner_trained_on_deciding_share`` counts only generations with a deciding case owned by
    a child (``deciding_child`` set); ``chance`` is 1/pop, the share expected if the winner
    were unrelated to who trained on the deciding image.
    """
    decided = [r for r in history if r.get("deciding_child") is not None]
    hits = sum(bool(r.get("winner_trained_on_deciding")) for r in decided)
    cases = [r["cases_used"] for r in history if r.get("cases_used") is not None]
    wins = [0] * max(pop, 1)
    for r in history:
        w = r.get("winner")
        if w is not None and 0 <= int(w) < len(wins):
            wins[int(w)] += 1
    return {
        "generations": len(history),
        "decided": len(decided),
        "fallbacks": sum(bool(r.get("fallback")) for r in history),
        "winner_trained_on_deciding": hits,
        "winner_trained_on_deciding_share": hits / len(decided) if decided else None,
        "chance": 1.0 / pop if pop else None,
        "mean_cases_used": sum(cases) / len(cases) if cases else None,
        "winner_counts": wins,
    }


class _LiveRun:
    """A :class:`glx.viz.LiveFigure` shown in the panel, plus the panel's progress bar.

    When plotly can build a ``FigureWidget`` (it needs anywidget), that widget is the view and
    updates itself in place. Otherwise the LiveFigure only keeps the figure data and this
    helper re-renders it into an ``Output`` (by setting its state) at most every
    ``min_interval`` seconds: that works in every front end, display-id updates inside Output
    widgets do not.
    """

    def __init__(self, title: str, *, mode: str = "auto", min_interval: float = 0.5,
                 progress: W.IntProgress | None = None) -> None:
        kernel = _in_kernel()
        want = {"auto": "widget" if kernel else "none"}.get(mode, mode)
        self.figure_live = viz.LiveFigure(LIVE_KEYS, x=LIVE_X, title=title, mode=want)
        self.widget_mode = self.figure_live.mode == "widget"
        self.draw = kernel and mode != "none"
        self.view: W.DOMWidget = (self.figure_live.figure if self.widget_mode  # type: ignore[assignment]
                                  else W.Output())
        self.progress = progress
        self.min_interval = float(min_interval)
        self._last = -math.inf

    def __call__(self, record: GenerationRecord, trainer: Any = None) -> None:
        self.figure_live(record, trainer)
        if self.progress is not None:
            self.progress.value = min(self.progress.max, self.progress.value + 1)
        self._redraw(force=False)

    def _redraw(self, force: bool) -> None:
        if not self.draw or self.widget_mode:
            return
        now = time.monotonic()
        if force or now - self._last >= self.min_interval:
            self._last = now
            _show(self.view, self.figure_live.figure)

    def finish(self) -> None:
        self._redraw(force=True)


class TrainingPanel:
    """Controls -> GLS (and an SGD baseline) -> live curves and a summary.

    Args:
        data: what :func:`glx.gls.train` accepts as ``data`` (a glx ``Dataset``,
            ``DeviceData`` or tensors); ``None`` loads ``base.dataset``.
        base: the configuration the controls start from and that supplies every option
            without a control (dataset, batch size, tie rule, device...).
        models: the model names offered (those that fit the data).
        baseline: train the SGD baseline after GLS (a checkbox).
        match: how the SGD budget matches the GLS run: ``"epochs"``, ``"lineage"`` or
            ``"compute"`` (see :func:`glx.gls.budget`); the SGD arm trains at GLS's
            per-child batch, for the matched number of optimizer steps.
        eval_points: about how many test evaluations each run makes (for the live curve).
        live: ``"auto"`` (draw when a kernel runs), ``"widget"``, ``"display"`` or ``"none"``.
        progress: tqdm progress bars while training.
        max_pop, max_generations: slider ranges.

    After :meth:`run` (or a click on **Run**), ``runs`` holds ``{"gls": Run, "sgd": Run}``
    and :meth:`summary` the key numbers. A failed click (say, a batch larger than a child's
    share of the data) shows the error in the panel and keeps it in ``error``.
    """

    def __init__(
        self,
        data: Any = None,
        *,
        base: gls.Config | None = None,
        models: Sequence[str] = ("mlp", "cnn"),
        baseline: bool = True,
        match: str = "epochs",
        eval_points: int = 40,
        live: str = "auto",
        progress: bool = True,
        max_pop: int = 8,
        max_generations: int = 400,
    ) -> None:
        if match not in gls.MATCHES:
            raise ValueError(f"match={match!r}: expected one of {gls.MATCHES}")
        if live not in viz.MODES:
            raise ValueError(f"live={live!r}: expected one of {viz.MODES}")
        base = dataclasses.replace(base) if base is not None else gls.Config()
        if base.method != "gls":
            base = dataclasses.replace(base, method="gls")
        models = list(models)
        if not models:
            raise ValueError("models: give at least one model name")
        if base.model not in models:
            models.insert(0, base.model)
        self.data, self.base = data, base
        self.eval_points, self.live_mode, self.progress = max(1, int(eval_points)), live, progress

        style = {"description_width": "130px"}
        wide = W.Layout(width="380px")
        self.pop = W.IntSlider(value=min(max(base.pop, 2), max_pop), min=2, max=max_pop,
                               description="population (p)", style=style, layout=wide)
        self.momentum = W.FloatSlider(value=base.momentum, min=0.0, max=0.99, step=0.01,
                                      description="momentum", style=style, layout=wide)
        self.momentum_policy = W.ToggleButtons(options=list(gls.MOMENTUM_POLICIES),
                                               value=base.momentum_policy,
                                               description="momentum policy", style=style)
        self.lr = W.FloatLogSlider(value=base.lr, base=10, min=-3, max=0, step=0.05,
                                   description="learning rate", style=style, layout=wide,
                                   readout_format=".3g")
        self.selection = W.Dropdown(options=list(gls.SELECTIONS), value=base.selection,
                                    description="selection", style=style)
        self.generations = W.IntSlider(value=min(base.generations, max_generations), min=1,
                                       max=max_generations, description="generations",
                                       style=style, layout=wide)
        self.seed = W.IntText(value=base.seed, description="seed", style=style)
        self.model = W.Dropdown(options=models, value=base.model, description="model",
                                style=style)
        self.baseline = W.Checkbox(value=baseline, description="train the SGD baseline too")
        self.match = W.Dropdown(options=list(gls.MATCHES), value=match,
                                description="SGD budget", style=style)
        self.button = W.Button(description="Run", button_style="primary", icon="play")
        self.status = W.HTML()
        self.progress_bar = W.IntProgress(value=0, min=0, max=1, description="",
                                          layout=W.Layout(width="380px"))
        self.area = W.VBox()        # one live figure per run
        self.output = W.Output()    # comparison figures and error tracebacks
        self.button.on_click(self._on_click)

        self.runs: dict[str, gls.Run] = {}
        self.live: dict[str, _LiveRun] = {}
        self.error: BaseException | None = None
        self.match.observe(lambda _: self._show_budget(), names="value")
        self.generations.observe(lambda _: self._show_budget(), names="value")
        self.pop.observe(lambda _: self._show_budget(), names="value")
        self._show_budget()

    # -- controls -> configs -------------------------------------------------------------

    def config(self) -> gls.Config:
        """The GLS configuration the controls describe (validated)."""
        gens = int(self.generations.value)
        return dataclasses.replace(
            self.base, method="gls", pop=int(self.pop.value), momentum=float(self.momentum.value),
            momentum_policy=self.momentum_policy.value, lr=float(self.lr.value),
            selection=self.selection.value, generations=gens, seed=int(self.seed.value),
            model=self.model.value, eval_every=max(1, math.ceil(gens / self.eval_points)),
        ).validate()

    def sgd_config(self, cfg: gls.Config | None = None) -> gls.Config:
        """The SGD baseline of ``cfg``: same model, data, seed, lr and momentum; the budget in
        optimizer steps matched on the panel's ``match`` (:func:`glx.gls.matched_sgd`)."""
        cfg = cfg or self.config()
        sgd = gls.matched_sgd(cfg, self.match.value, gls.training_images(cfg, self.data))
        return dataclasses.replace(
            sgd, selection="lexicase",
            eval_every=max(1, math.ceil(sgd.generations / self.eval_points)),
        ).validate()

    def _show_budget(self) -> None:
        gens, pop = int(self.generations.value), int(self.pop.value)
        epochs = gls.sgd_epochs(gens, pop, self.match.value)
        self.status.value = (f"GLS: {gens} generations at p={pop} = {gens} epochs of gradient "
                             f"work, {gens / pop:.3g} epochs along the lineage. SGD baseline: "
                             f"about {epochs:.3g} epochs (matched on {self.match.value}, in "
                             "optimizer steps).")

    # -- running ---------------------------------------------------------------------------

    def run(self) -> dict[str, gls.Run]:
        """Train GLS (and the SGD baseline) with the current controls; returns ``runs``."""
        cfg = self.config()
        plan = [("gls", cfg)]
        if self.baseline.value:
            plan.append(("sgd", self.sgd_config(cfg)))
        self.runs, self.live, self.error = {}, {}, None
        self.area.children = ()
        self.output.outputs = ()
        for name, c in plan:
            label = (f"GLS p={c.pop}, {c.selection}, momentum {c.momentum:g} ({c.momentum_policy})"
                     if name == "gls" else f"SGD, {c.steps} steps")
            self.status.value = f"training {html.escape(label)} ..."
            self.progress_bar.value, self.progress_bar.max = 0, c.generations
            self.progress_bar.description = name.upper()
            live = _LiveRun(label, mode=self.live_mode,
                            progress=self.progress_bar if self.progress else None)
            self.live[name] = live
            self.area.children = (*self.area.children, live.view)
            # The panel's own progress bar replaces tqdm's, which would print to the cell.
            self.runs[name] = gls.train(c, data=self.data, callbacks=[live], progress=False)
            live.finish()
        self.status.value = self._summary_html()
        self._show_comparison()
        return self.runs

    def _on_click(self, _button: Any = None) -> None:
        # Exceptions raised in a click handler never reach the notebook (ipywidgets logs them
        # out of sight), so they are shown in the panel and kept in `error`.
        self.button.disabled = True
        try:
            self.run()
        except Exception as e:  # noqa: BLE001 - shown to the user, kept for inspection
            self.error = e
            self.status.value = ("<b style='color:#b00'>run failed:</b> "
                                 f"<code>{html.escape(f'{type(e).__name__}: {e}')}</code>")
            _show_text(self.output, traceback.format_exc())
        finally:
            self.button.disabled = False

    # -- results ---------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Final test accuracies, budgets and GLS's selection statistics of the last run."""
        out: dict[str, Any] = {}
        for name, run in self.runs.items():
            out[f"{name}_test_acc"] = run.test_accuracy
            out[f"{name}_generations"] = len(run.history)
            out[f"{name}_wall_s"] = run.wall_seconds
        if "gls" in self.runs:
            run = self.runs["gls"]
            out["selection"] = run_summary(run.history, int(run.config["pop"]))
        return out

    def _summary_html(self) -> str:
        s = self.summary()
        rows = []
        for name in ("gls", "sgd"):
            if f"{name}_test_acc" in s:
                acc = s[f"{name}_test_acc"]
                rows.append(f"<tr><td>{name.upper()}</td><td>{s[f'{name}_generations']}</td>"
                            f"<td>{'-' if acc is None else f'{100 * acc:.2f}%'}</td>"
                            f"<td>{s[f'{name}_wall_s']:.1f} s</td></tr>")
        sel = s.get("selection")
        note = ""
        if sel and sel["winner_trained_on_deciding_share"] is not None:
            note = (f"<p>The winner trained on the deciding image in "
                    f"{sel['winner_trained_on_deciding']}/{sel['decided']} decided generations "
                    f"({100 * sel['winner_trained_on_deciding_share']:.0f}%; chance "
                    f"{100 * sel['chance']:.0f}%); {sel['fallbacks']} generation(s) ended in a "
                    f"random draw; selection used {sel['mean_cases_used']:.0f} cases on "
                    f"average.</p>")
        return ("<table><tr><th>run</th><th>generations</th><th>test accuracy</th>"
                f"<th>time</th></tr>{''.join(rows)}</table>{note}")

    def _show_comparison(self) -> None:
        if not _in_kernel() or not self.runs:
            return
        figs = [viz.curves({k.upper(): r.history for k, r in self.runs.items()}, y="test_acc",
                           x=LIVE_X, title="test accuracy against epochs of gradient work")]
        if "gls" in self.runs:
            figs.append(viz.winners(self.runs["gls"].history,
                                    title="GLS: winning child and cases used per generation"))
        _show(self.output, *figs)

    # -- layout ----------------------------------------------------------------------------

    @property
    def widget(self) -> W.VBox:
        """The whole panel: controls, the Run button, the status line and the output area."""
        left = W.VBox([self.pop, self.momentum, self.momentum_policy, self.lr, self.generations])
        right = W.VBox([self.selection, self.model, self.seed, self.baseline, self.match])
        return W.VBox([W.HBox([left, right]), W.HBox([self.button, self.progress_bar]),
                       self.status, self.area, self.output])

    def _ipython_display_(self) -> None:
        _display(self.widget)


def training_panel(data: Any = None, **kw: Any) -> TrainingPanel:
    """Build a :class:`TrainingPanel` (``display(panel)`` or ``panel.widget`` shows it)."""
    return TrainingPanel(data, **kw)


# ------------------------------------------------------------------------------- sliders


def _control(name: str, spec: Any) -> W.ValueWidget:
    """A widget from a spec: a widget as is; (min, max[, step]) -> slider; list -> dropdown."""
    if isinstance(spec, W.ValueWidget):
        return spec
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec) \
        if isinstance(spec, tuple) else False
    if numeric and len(spec) in (2, 3):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
            lo, hi, *step = spec
            return W.IntSlider(value=lo, min=lo, max=hi, step=step[0] if step else 1,
                               description=name)
        lo, hi, *step = (float(v) for v in spec)
        return W.FloatSlider(value=lo, min=lo, max=hi, step=step[0] if step else (hi - lo) / 20,
                             description=name)
    if isinstance(spec, (list, tuple)) and spec:
        return W.Dropdown(options=list(spec), value=spec[0], description=name)
    raise ValueError(f"{name}={spec!r}: expected a widget, (min, max[, step]) or a list of options")


class SliderPanel:
    """A function of a few controls, recomputed and redrawn when a control's value changes.

    ``fn(**values)`` may return a plotly figure, a string (shown as HTML) or anything
    displayable; the latest return value is kept in ``result`` and the number of calls in
    ``calls``. Sliders report only when released (``continuous_update=False``), so an
    expensive ``fn`` runs once per change, not once per pixel dragged.
    """

    def __init__(self, fn: Callable[..., Any], controls: Mapping[str, Any], *,
                 run: bool = True) -> None:
        if not callable(fn):
            raise ValueError(f"fn={fn!r}: must be callable")
        if not controls:
            raise ValueError("controls: give at least one control")
        self.fn = fn
        self.controls = {name: _control(name, spec) for name, spec in controls.items()}
        for c in self.controls.values():
            if "continuous_update" in c.trait_names():
                c.continuous_update = False
            c.observe(self._changed, names="value")
        self.output = W.Output()
        self.status = W.HTML()
        self.result: Any = None
        self.calls = 0
        self.error: BaseException | None = None
        if run:
            self.update()

    def values(self) -> dict[str, Any]:
        return {name: c.value for name, c in self.controls.items()}

    def _changed(self, _change: Any) -> None:
        try:
            self.update()
        except Exception as e:  # noqa: BLE001 - a failing callback would be lost otherwise
            self.error = e
            self.status.value = (f"<b style='color:#b00'>failed:</b> "
                                 f"<code>{html.escape(f'{type(e).__name__}: {e}')}</code>")

    def update(self) -> Any:
        """Call ``fn`` with the current values and redraw its result."""
        values = self.values()
        self.status.value = "computing ..."
        t0 = time.perf_counter()
        self.result = self.fn(**values)
        self.calls += 1
        self.error = None
        self.status.value = f"computed in {time.perf_counter() - t0:.1f} s"
        if isinstance(self.result, str) and _in_kernel():
            from IPython.display import HTML

            _show(self.output, HTML(self.result))
        else:
            _show(self.output, self.result)
        return self.result

    @property
    def widget(self) -> W.VBox:
        return W.VBox([W.HBox(list(self.controls.values())), self.status, self.output])

    def _ipython_display_(self) -> None:
        _display(self.widget)


def slider_panel(fn: Callable[..., Any], *, run: bool = True, **controls: Any) -> SliderPanel:
    """``slider_panel(fn, p=(2, 8), momentum=(0.0, 0.95, 0.05))``: see :class:`SliderPanel`."""
    return SliderPanel(fn, controls, run=run)
