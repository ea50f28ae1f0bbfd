"""Which path a population runs on: the rule of ``path="auto"``, ``path="measure"``, and the
fallback to the looped path when the model does not work under vmap.

``"auto"`` starts on the batched path, except on the CPU for convolutional models of 1M
parameters or more, and falls back to ``"looped"`` the first time the model fails under vmap.
``"measure"`` times both paths on the first training batch (a few steps each, undone
afterwards) and keeps the faster: the choice then follows this device, at the price of a few
steps and of a choice that may differ between runs when the two paths are close.

The CPU rule of ``"auto"`` follows ``benchmarks/bench_paths.py`` on the 2-core dev box (1
thread, p = 4, with `keep_freed_memory`; runs of 2026-11-23 and 2026-12-02 in
``benchmarks/RESULTS.md``): batched/looped time per step 0.74-0.92 for the MLP, 0.86-1.01 for
the small 2-D and 1-D CNNs (0.91-0.95 per digits-CNN generation), 1.07-1.21 for the CIFAR
FastNet and ResNet18 (grouped convolutions of many channels are slower than separate ones on
the CPU).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from glx.models import count_parameters

if TYPE_CHECKING:
    from glx.population.core import Population

LARGE_CONV_CPU = 1_000_000  # parameters from which a conv net runs faster looped on the CPU


def choose_path(requested: str, device: torch.device, model: nn.Module
                ) -> tuple[str, str, str | None]:
    """The path to start on, why, and what is still pending (``"auto"``: the vmap check on the
    first call; ``"measure"``: the timing on the first training batch; None: nothing)."""
    if requested in ("looped", "batched"):
        return requested, f"requested: {requested}", None
    if requested == "measure":
        return "batched", "measure: pending (the first train_step)", "measure"
    if device.type == "cpu":
        n = count_parameters(model)
        conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
        if conv and n >= LARGE_CONV_CPU:
            return "looped", (f"auto: looped on CPU for a convolutional model of {n:,} "
                              "parameters (batched measured 1.07-1.21x the loop's time for such "
                              "models)"), None
        return "batched", ("auto: batched on CPU (measured 0.74-1.01x the loop's time for "
                           "models under 1M parameters)"), "auto"
    # Tried lazily (no data exists yet): the first call falls back to looped if the model
    # fails under vmap.
    return "batched", f"auto: batched on {device.type}", "auto"


def guarded(pop: Population, method: str, *args: Any, mutates: bool = True) -> Any:
    """``pop``'s path runs ``method``; while the auto check is pending, a batched failure
    switches to the looped path and runs it there.

    ``mutates``: the call may change state before failing (a training step updates BatchNorm
    statistics in its forward), so a snapshot is taken to undo it on fallback.
    """
    if pop.path == "looped":
        return getattr(pop._impl, method)(*args)
    if not pop._auto_pending:
        try:
            return getattr(pop._impl, method)(*args)
        except Exception as e:
            if pop._requested_path == "batched":
                raise RuntimeError(
                    f"path='batched' failed ({type(e).__name__}: {e}); if this model does "
                    "not work under torch.func.vmap, use path='looped' or path='auto'") from e
            raise
    snapshot = pop.state_dict() if mutates else None
    try:
        return getattr(pop._impl, method)(*args)
    except Exception as e:  # the model may not work under vmap: try the loop
        if snapshot is not None:
            pop.load_state_dict(snapshot)
        reason = pop.path_reason
        pop._switch("looped", f"fallback: vmap failed: {type(e).__name__}: {e}", pending=False)
    try:
        return getattr(pop._impl, method)(*args)
    except Exception:
        # The loop fails too, so the call itself is at fault (bad labels, a wrong input shape),
        # not vmap: undo the switch, stay pending, and raise the loop's plain error.
        pop._switch("batched", reason, pending=True)
        if snapshot is not None:
            pop.load_state_dict(snapshot)
        raise


def measure(pop: Population, x: torch.Tensor, y: torch.Tensor, lr: float | torch.Tensor,
            steps: int = 2) -> None:
    """``path="measure"``: time both paths on this batch and keep the faster one.

    Each path takes one warm-up step and ``steps`` timed steps from the same snapshot; the
    snapshot (weights, buffers, momentum) and every RNG state are then restored, so the run goes
    on exactly as if it had started on the chosen path. A path that fails (the model does not
    work under vmap) is not chosen.
    """
    snapshot = pop.state_dict()
    ms: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    with torch.random.fork_rng(devices=fork_devices(pop.device)):
        for path in ("batched", "looped"):
            if path != pop.path:
                pop._switch(path, pop.path_reason, pending=False)
            pop.load_state_dict(snapshot)
            try:
                pop._impl.train_step(x, y, lr)
                pop._settings.sync()
                t0 = time.perf_counter()
                for _ in range(steps):
                    pop._impl.train_step(x, y, lr)
                pop._settings.sync()
                ms[path] = (time.perf_counter() - t0) / steps * 1e3
            except Exception as e:  # this path cannot run the model
                ms[path], errors[path] = None, f"{type(e).__name__}: {e}"
    ok = {k: v for k, v in ms.items() if v is not None}
    if not ok:
        pop.load_state_dict(snapshot)
        raise RuntimeError(f"path='measure': neither path runs this model ({errors})")
    best = min(ok, key=ok.get)
    shown = ", ".join(f"{k} {v:.2f} ms" if v is not None else f"{k} failed ({errors[k]})"
                      for k, v in ms.items())
    if best != pop.path:
        pop._switch(best, "", pending=False)
    pop.load_state_dict(snapshot)
    pop.path_reason = f"measured per step on {pop.device.type}: {shown}"
    pop._measure_pending = pop._auto_pending = False


def fork_devices(device: torch.device) -> list[int]:
    """CUDA devices whose RNG state `fork_rng` must save so that nothing is disturbed."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return list(range(torch.cuda.device_count()))
    if device.type == "cuda":
        return [device.index if device.index is not None else 0]
    return []
