"""The population: p children of one parent, trained and scored together.

A generation of gradient lexicase selection starts every child from the parent, trains each
child with SGD on its own minibatches (mutation by subset gradient descent), scores all children
on the selection cases, and copies the winner into every child (`adopt`). Plain SGD is the same
object with ``p = 1``.

Two execution paths hold the same state and give the same results up to float rounding:

* ``"batched"``: the children's parameters and buffers are stacked along a leading dimension of
  size p (`torch.func.stack_module_state`) and the model runs once for all children under
  `torch.func.vmap` of `torch.func.functional_call`. The stacked parameters are autograd leaves,
  so one backward of the summed per-child mean losses gives every child its own gradient.
  BatchNorm buffers are passed batched, so the in-place running-statistics updates (and the
  integer ``num_batches_tracked`` counters) land per child.
* ``"looped"``: p ordinary modules, each trained on its own minibatch in a Python loop.

``path="auto"`` picks ``"batched"``, except on the CPU for convolutional models of 1M
parameters or more, and falls back to ``"looped"`` the first time the model fails under vmap;
`Population.path_reason` says which and why. ``path="measure"`` instead times both paths
on the first training batch (a few steps each, undone afterwards) and keeps the faster: the
choice then follows this device, at the price of a few steps and of a choice that may differ
between runs when the two paths are close. The CPU rule of ``"auto"`` follows
``benchmarks/bench_paths.py`` on the 2-core dev box (1 thread, p = 4, with
`keep_freed_memory`; two runs on a shared machine, so roughly +-5%): batched/looped time per
step 0.74-0.84 for the MLP, 0.88-0.93 for the small 2-D and 1-D CNNs, 1.07-1.21 for the CIFAR
FastNet and ResNet18 (grouped convolutions of many channels are slower than separate ones on
the CPU).

The SGD update reproduces ``torch.optim.SGD(lr, momentum, weight_decay=wd, nesterov,
dampening=0)`` with `torch._foreach_*` ops over all tensors at once::

    g   = grad + wd * w
    buf = momentum * buf + g          (buf starts at zero, so the first step gives buf = g)
    d   = g + momentum * buf if nesterov else buf
    w   = w - lr * d

Nothing in `train_step` reads a tensor value on the host, so it never synchronises with the
device.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import numbers
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Population", "PATHS", "MOMENTUM_POLICIES", "keep_freed_memory"]

PATHS = ("auto", "batched", "looped", "measure")
MOMENTUM_POLICIES = ("reset", "inherit")
_FORMAT = "glx.population/1"


# --------------------------------------------------------------------------- helpers


def _fork_devices(device: torch.device) -> list[int]:
    """CUDA devices whose RNG state `fork_rng` must save so a seeded build disturbs nothing."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return list(range(torch.cuda.device_count()))
    if device.type == "cuda":
        return [device.index if device.index is not None else 0]
    return []


def _build(model_fn: Callable[[], nn.Module], seed: int, device: torch.device) -> nn.Module:
    """Build one model under ``seed`` without touching the caller's global RNG state.

    Model initialisers draw from the global RNG, so the build runs inside `fork_rng`, which
    restores every RNG state it saved on exit.
    """
    devices = _fork_devices(device)
    with torch.random.fork_rng(devices=devices):
        # Not torch.manual_seed: with CUDA uninitialised it queues a CUDA reseed that would run
        # later, outside the fork, and change the caller's CUDA RNG stream.
        torch.random.default_generator.manual_seed(seed)
        if devices:
            torch.cuda.manual_seed_all(seed)
        model = model_fn()
    if not isinstance(model, nn.Module):
        raise ValueError(f"model_fn must return an nn.Module, got {type(model).__name__}")
    return model.to(device)


def _channels_last(t: Tensor) -> Tensor:
    """Channels-last layout for the trailing (C, H, W) dims of a tensor of rank >= 4.

    For a 4-D tensor this is exactly ``torch.channels_last``; for stacked (p, N, C, H, W)
    tensors it makes every slice ``t[i]`` channels-last.
    """
    if t.dim() < 4:
        return t
    return t.movedim(-3, -1).contiguous().movedim(-1, -3)


def _n_params(module: nn.Module) -> int:
    return sum(t.numel() for t in module.parameters())


def _is_large_conv_model(module: nn.Module) -> bool:
    """Whether vmap runs ``module`` slower than a loop on the CPU: a convolutional model of 1M
    parameters or more (grouped convolutions of many channels are slower there than separate
    ones; `benchmarks/bench_paths.py` measures it)."""
    has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())
    return has_conv and _n_params(module) >= 1_000_000


def _batchnorm_in_float32(module: nn.Module) -> None:
    """Run every BatchNorm of ``module`` on float32 inputs, returning the input's dtype.

    Under ``vmap`` with bf16 autocast on CUDA, batch norm's batching rule requires the input
    and the (float32) running statistics to share a dtype; computing the normalisation in
    float32 is also what autocast does outside vmap, and the cast back keeps activations bf16.
    """
    def pre(m: nn.Module, args: tuple) -> tuple:
        m._glx_dtype = args[0].dtype
        return (args[0].float(), *args[1:])

    def post(m: nn.Module, args: tuple, out: Tensor) -> Tensor:
        return out.to(m._glx_dtype)

    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_pre_hook(pre)
            m.register_forward_hook(post)


_KEPT: bool | None = None  # keep_freed_memory's outcome, once per process


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse instead of returning them to the OS.

    Speed trick for training on the CPU. By default glibc serves large allocations with a fresh
    ``mmap`` (above a threshold that adapts up to 32 MiB) and trims the top of its heap on free,
    so a step's multi-megabyte activations are page-faulted in anew every step: on the 2-core
    dev box this made the batched population's ReLU, BatchNorm backward and broadcast multiplies
    10-50x slower than their arithmetic, and the batched small-CNN step 1.14-1.3x slower than
    the looped one (0.93 with this setting). Here the mmap threshold is fixed at its maximum,
    32 MiB, and the trim threshold at 1 GiB: blocks under 32 MiB are then reused from the heap,
    and the heap keeps up to 1 GiB of free space at its top. Blocks of 32 MiB or more are still
    mapped and unmapped each time. The setting is process-wide and replaces any malloc settings
    from ``GLIBC_TUNABLES``; it is made once, on Linux with glibc only, and not at all with
    ``GLX_KEEP_FREED_MEMORY=0`` (or ``false``/``no``/``off``) in the environment.

    Returns whether glibc accepted the setting. (With another allocator preloaded, such as
    jemalloc or tcmalloc, glibc accepts it but it has no effect.)
    """
    global _KEPT
    if _KEPT is not None:
        return _KEPT
    _KEPT = False
    opt_out = os.environ.get("GLX_KEEP_FREED_MEMORY", "1").strip().lower()
    if opt_out in ("0", "false", "no", "off") or not sys.platform.startswith("linux"):
        return _KEPT
    if platform.libc_ver()[0] != "glibc":  # musl and others have no mallopt
        return _KEPT
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return _KEPT
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h; 1 means accepted
    _KEPT = mallopt(m_mmap_threshold, 32 << 20) == 1 and mallopt(m_trim_threshold, 1 << 30) == 1
    return _KEPT


def _check_index(value: int | Tensor, p: int, name: str) -> int:
    """A child index in [0, p) as an int (a one-element integer tensor is accepted)."""
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.dtype.is_floating_point or value.dtype == torch.bool:
            raise ValueError(f"{name} must be one integer, got tensor {value!r}")
        value = int(value.item())
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if not 0 <= value < p:
        raise ValueError(f"{name} must be in [0, {p}), got {value}")
    return value


def _copy_state_into(module: nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor]
                     ) -> None:
    """Write one child's parameters and buffers into ``module`` (same layout as the template)."""
    with torch.no_grad():
        for name, t in module.named_parameters():
            t.copy_(params[name])
        for name, t in module.named_buffers():
            t.copy_(buffers[name])


# --------------------------------------------------------------------------- population


class Population:
    """p children of one parent, trained with SGD and scored in one object.

    Args:
        model_fn: builds one model (the same architecture every call). Its initialisation may
            use the global RNG: every build here runs inside `torch.random.fork_rng` after
            seeding, so the caller's RNG state is left untouched.
        p: number of children (1 = plain SGD).
        device: where all state lives.
        path: ``"auto"``, ``"batched"``, ``"looped"`` or ``"measure"`` (see the module
            docstring).
        momentum, weight_decay, nesterov: SGD hyper-parameters (dampening is 0).
        independent_init: when True child i is built under seed ``seed + i`` (different random
            initialisations); otherwise one model is built under ``seed`` and every child is an
            exact copy of it. Child 0 is the same model either way.
        seed: seed of the builds above.
        amp: bfloat16 autocast for forward passes; None means on for CUDA, off elsewhere. The
            master weights, gradients, momentum buffers and losses stay float32.
        channels_last: store 4-D parameters and inputs channels-last (faster convolutions on
            recent GPUs).
        compile: wrap the forward in `torch.compile`; if compiling fails the population warns
            and continues uncompiled.
    """

    def __init__(
        self,
        model_fn: Callable[[], nn.Module],
        p: int,
        *,
        device: str | torch.device = "cpu",
        path: str = "auto",
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        nesterov: bool = False,
        independent_init: bool = False,
        seed: int = 0,
        amp: bool | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        if not callable(model_fn):
            raise ValueError(f"model_fn must be callable, got {model_fn!r}")
        if not isinstance(p, numbers.Integral) or isinstance(p, bool) or p < 1:
            raise ValueError(f"p must be an integer >= 1, got {p!r}")
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        if not isinstance(momentum, numbers.Real) or not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if not isinstance(weight_decay, numbers.Real) or float(weight_decay) < 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        if nesterov and momentum == 0:
            raise ValueError(f"nesterov needs momentum > 0, got momentum={momentum!r}")
        if amp not in (None, True, False):
            raise ValueError(f"amp must be None, True or False, got {amp!r}")
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device is not a torch device: {device!r}") from e

        self.p = int(p)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.nesterov = bool(nesterov)
        self.independent_init = bool(independent_init)
        self.seed = int(seed)
        self.amp = (self.device.type == "cuda") if amp is None else bool(amp)
        self.channels_last = bool(channels_last)
        self.compile = bool(compile)
        self._model_fn = model_fn
        if self.device.type == "cpu":
            keep_freed_memory()

        if independent_init:
            models = [_build(model_fn, self.seed + i, self.device) for i in range(self.p)]
        else:
            first = _build(model_fn, self.seed, self.device)
            models = [first] + [copy.deepcopy(first) for _ in range(self.p - 1)]
        if self.channels_last:
            models = [m.to(memory_format=torch.channels_last) for m in models]
        # A private copy that never trains: the module `functional_call` runs (batched path) and
        # the pattern that `parent_module`/`child_module` copy.
        self._template = copy.deepcopy(models[0])
        # What child_module and the looped path copy: the template, or (with amp, whose
        # BatchNorm hooks below must stay off plain modules) a hook-free copy of it.
        self._pattern = self._template
        if self.amp:
            self._pattern = copy.deepcopy(models[0])
            _batchnorm_in_float32(self._template)

        self._auto_pending = False
        self._measure_pending = False
        if path == "looped":
            self.path, self.path_reason = "looped", "requested: looped"
        elif path == "batched":
            self.path, self.path_reason = "batched", "requested: batched"
        elif path == "measure":
            self.path, self.path_reason = "batched", "measure: pending (the first train_step)"
            # Until then, an evaluation that fails under vmap falls back as with "auto".
            self._measure_pending = self._auto_pending = True
        elif self.device.type == "cpu" and _is_large_conv_model(models[0]):
            self.path = "looped"
            self.path_reason = (
                f"auto: looped on CPU for a convolutional model of {_n_params(models[0]):,} "
                "parameters (batched measured 1.07-1.21x the loop's time for such models)")
        else:
            self.path = "batched"
            self.path_reason = (
                "auto: batched on CPU (measured 0.74-0.93x the loop's time for models under 1M "
                "parameters)" if self.device.type == "cpu"
                else f"auto: batched on {self.device.type}")
            # Tried lazily (no data exists yet): the first call falls back to looped if the
            # model fails under vmap.
            self._auto_pending = True
        self._requested_path = path

        if self.path == "batched":
            self._init_batched(models)
        else:
            self._init_looped(models)

    # ------------------------------------------------------------------ state layout

    def _init_batched(self, models: list[nn.Module]) -> None:
        params, buffers = torch.func.stack_module_state(models)
        self._pnames = list(params)
        self._bnames = list(buffers)
        if self.channels_last:
            params = {k: _channels_last(v).detach().requires_grad_(v.requires_grad)
                      for k, v in params.items()}
        self._sparams: list[Tensor] = [params[k] for k in self._pnames]
        self._sbuffers: list[Tensor] = [buffers[k] for k in self._bnames]
        self._smom: list[Tensor] | None = (
            [torch.zeros_like(t, memory_format=torch.preserve_format) for t in self._sparams]
            if self.momentum > 0 else None)
        self._children: list[nn.Module] = []
        self._fwd_train = self._make_batched_forward(x_batched=True)
        self._fwd_eval = self._make_batched_forward(x_batched=False)

    def _init_looped(self, models: list[nn.Module]) -> None:
        self._children = models
        self._pnames = [n for n, _ in models[0].named_parameters()]
        self._bnames = [n for n, _ in models[0].named_buffers()]
        self._sparams, self._sbuffers, self._smom = [], [], None
        # One flat list over all children, so each foreach op is a single call.
        self._lparams: list[Tensor] = [t for m in models for t in m.parameters()]
        self._lbuffers: list[Tensor] = [t for m in models for t in m.buffers()]
        self._lmom: list[Tensor] | None = (
            [torch.zeros_like(t, memory_format=torch.preserve_format) for t in self._lparams]
            if self.momentum > 0 else None)
        self._k = len(self._pnames)
        self._kb = len(self._bnames)
        self._fwd_child = self._maybe_compile(lambda m, x: m(x))

    def _maybe_compile(self, fn: Callable) -> Callable:
        """`torch.compile` ``fn`` when asked. Compile errors surface on the first call, so the
        wrapper then warns once (for the whole population) and runs uncompiled from then on."""
        if not self.compile:
            return fn
        try:
            compiled = torch.compile(fn)
        except Exception as e:  # any compiler failure means "run uncompiled"
            self._compile_failed(e)
            return fn

        def call(*args):
            if not self.compile:
                return fn(*args)
            try:
                return compiled(*args)
            except Exception as e:
                self._compile_failed(e)
                return fn(*args)

        return call

    def _compile_failed(self, e: Exception) -> None:
        if self.compile:
            warnings.warn(f"torch.compile failed, running uncompiled: {type(e).__name__}: {e}",
                          stacklevel=4)
        self.compile = False

    def _make_batched_forward(self, x_batched: bool) -> Callable:
        template = self._template
        pnames, bnames = self._pnames, self._bnames

        def one(params: tuple[Tensor, ...], buffers: tuple[Tensor, ...], x: Tensor) -> Tensor:
            state = dict(zip(pnames, params, strict=True))
            state.update(zip(bnames, buffers, strict=True))
            return torch.func.functional_call(template, state, (x,))

        # Buffers are batched too: BatchNorm's in-place running-stat updates then land per child.
        fwd = torch.func.vmap(one, in_dims=(0, 0, 0 if x_batched else None),
                              randomness="different")
        return self._maybe_compile(fwd)

    # ------------------------------------------------------------------ modes & plumbing

    def _set_mode(self, training: bool) -> None:
        self._template.train(training)
        for m in self._children:
            m.train(training)

    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _prep_x(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        return _channels_last(x) if self.channels_last else x

    def _switch(self, path: str, reason: str, pending: bool) -> None:
        """Move every child's state onto the other path; ``pending``: the auto check stays."""
        sd = self.state_dict()
        models = [copy.deepcopy(self._pattern) for _ in range(self.p)]
        if path == "looped":
            self._sparams, self._sbuffers, self._smom = [], [], None
            self._init_looped(models)
        else:
            self._lparams, self._lbuffers, self._lmom = [], [], None
            self._init_batched(models)
        self.path, self.path_reason, self._auto_pending = path, reason, pending
        self.load_state_dict(sd)

    def _guarded(self, batched_fn: Callable, looped_fn: Callable, *args, mutates: bool = True):
        """Run ``batched_fn``; while the auto check is pending, fall back to looped if it fails.

        ``mutates``: the call may change state before failing (a training step updates BN
        statistics in its forward), so a snapshot is taken to undo it on fallback.
        """
        if self.path == "looped":
            return looped_fn(*args)
        if not self._auto_pending:
            try:
                return batched_fn(*args)
            except Exception as e:
                if self._requested_path == "batched":
                    raise RuntimeError(
                        f"path='batched' failed ({type(e).__name__}: {e}); if this model does "
                        "not work under torch.func.vmap, use path='looped' or path='auto'") from e
                raise
        snapshot = self.state_dict() if mutates else None
        try:
            return batched_fn(*args)
        except Exception as e:  # the model may not work under vmap: try the loop
            if snapshot is not None:
                self.load_state_dict(snapshot)
            reason = self.path_reason
            self._switch("looped", f"fallback: vmap failed: {type(e).__name__}: {e}",
                         pending=False)
        try:
            return looped_fn(*args)
        except Exception:
            # The loop fails too, so the call itself is at fault (bad labels, a wrong input
            # shape), not vmap: undo the switch, stay pending, and raise the loop's plain error.
            self._switch("batched", reason, pending=True)
            if snapshot is not None:
                self.load_state_dict(snapshot)
            raise

    # ------------------------------------------------------------------ training

    def train_step(self, x: Tensor, y: Tensor, lr: float) -> tuple[Tensor, Tensor]:
        """One SGD step for every child, child i on minibatch ``(x[i], y[i])``.

        Args:
            x: inputs of shape (p, B, ...).
            y: integer labels of shape (p, B).
            lr: learning rate (a Python number, so no device sync is needed).

        Returns:
            ``(loss, correct)``: per-child mean cross-entropy (float32, shape (p,)) and number of
            correct top-1 predictions (int64, shape (p,)), both on the device, not synchronised.
        """
        if x.dim() < 2 or x.shape[0] != self.p:
            raise ValueError(f"x must have shape (p={self.p}, B, ...), got {tuple(x.shape)}")
        if tuple(y.shape) != tuple(x.shape[:2]):
            raise ValueError(f"y must have shape {tuple(x.shape[:2])}, got {tuple(y.shape)}")
        if not isinstance(lr, numbers.Real) or float(lr) < 0:
            raise ValueError(f"lr must be a number >= 0, got {lr!r}")
        x = self._prep_x(x)
        y = y.to(self.device, non_blocking=True)
        if self._measure_pending:
            self._measure(x, y, float(lr))
        if self._auto_pending:
            out = self._guarded(self._train_batched, self._train_looped, x, y, float(lr))
            self._auto_pending = False
            if self.path == "batched":
                self.path_reason += ", vmap check passed"
            return out
        return self._guarded(self._train_batched, self._train_looped, x, y, float(lr))

    def _measure(self, x: Tensor, y: Tensor, lr: float, steps: int = 2) -> None:
        """``path="measure"``: time both paths on this batch and keep the faster one.

        Each path takes one warm-up step and ``steps`` timed steps from the same snapshot; the
        snapshot (weights, buffers, momentum) and every RNG state are then restored, so the
        run goes on exactly as if it had started on the chosen path. A path that fails (the
        model does not work under vmap) is not chosen.
        """
        snapshot = self.state_dict()
        ms: dict[str, float | None] = {}
        errors: dict[str, str] = {}
        with torch.random.fork_rng(devices=_fork_devices(self.device)):
            for path in ("batched", "looped"):
                if path != self.path:
                    self._switch(path, self.path_reason, pending=False)
                self.load_state_dict(snapshot)
                fn = self._train_batched if path == "batched" else self._train_looped
                try:
                    fn(x, y, lr)
                    self._sync()
                    t0 = time.perf_counter()
                    for _ in range(steps):
                        fn(x, y, lr)
                    self._sync()
                    ms[path] = (time.perf_counter() - t0) / steps * 1e3
                except Exception as e:  # this path cannot run the model
                    ms[path], errors[path] = None, f"{type(e).__name__}: {e}"
        ok = {k: v for k, v in ms.items() if v is not None}
        if not ok:
            self.load_state_dict(snapshot)
            raise RuntimeError(f"path='measure': neither path runs this model ({errors})")
        best = min(ok, key=ok.get)
        shown = ", ".join(f"{k} {v:.2f} ms" if v is not None else f"{k} failed ({errors[k]})"
                          for k, v in ms.items())
        if best != self.path:
            self._switch(best, "", pending=False)
        self.load_state_dict(snapshot)
        self.path_reason = f"measured per step on {self.device.type}: {shown}"
        self._measure_pending = self._auto_pending = False

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def _train_batched(self, x: Tensor, y: Tensor, lr: float) -> tuple[Tensor, Tensor]:
        self._set_mode(True)
        with self._autocast():
            logits = self._fwd_train(tuple(self._sparams), tuple(self._sbuffers), x)
        logits = logits.float()
        per_ex = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        loss = per_ex.view(self.p, -1).mean(1)
        # d(sum of per-child losses)/d(child i's params) is child i's own gradient.
        loss.sum().backward()
        grads = [t.grad for t in self._sparams]
        self._sgd(self._sparams, grads, self._smom, lr)
        for t in self._sparams:
            t.grad = None
        correct = (logits.detach().argmax(-1) == y).sum(1)
        return loss.detach(), correct

    def _train_looped(self, x: Tensor, y: Tensor, lr: float) -> tuple[Tensor, Tensor]:
        self._set_mode(True)
        losses, corrects = [], []
        for i, m in enumerate(self._children):
            with self._autocast():
                logits = self._fwd_child(m, x[i])
            logits = logits.float()
            loss = F.cross_entropy(logits, y[i])
            loss.backward()  # per child, so each graph is freed before the next forward
            losses.append(loss.detach())
            corrects.append((logits.detach().argmax(-1) == y[i]).sum())
        self._sgd(self._lparams, [t.grad for t in self._lparams], self._lmom, lr)
        for t in self._lparams:
            t.grad = None
        return torch.stack(losses), torch.stack(corrects)

    @torch.no_grad()
    def _sgd(self, params: list[Tensor], grads: list[Tensor], mom: list[Tensor] | None,
             lr: float) -> None:
        """torch.optim.SGD's update (dampening 0) with foreach ops over every tensor at once.

        Like torch.optim.SGD, a parameter without a gradient (frozen, or unused this step) is
        left alone: no weight decay, no momentum update.
        """
        if any(g is None for g in grads):
            keep = [j for j, g in enumerate(grads) if g is not None]
            if not keep:
                return
            params = [params[j] for j in keep]
            grads = [grads[j] for j in keep]
            mom = None if mom is None else [mom[j] for j in keep]
        if self.weight_decay != 0:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        if mom is not None:
            torch._foreach_mul_(mom, self.momentum)
            torch._foreach_add_(mom, grads)
            if self.nesterov:
                step = torch._foreach_add(grads, mom, alpha=self.momentum)
            else:
                step = mom
        else:
            step = grads
        torch._foreach_add_(params, step, alpha=-lr)

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:
        """Logits of every child on the same inputs ``x`` (b, ...): float32 (p, b, classes).

        Eval mode (BatchNorm uses running statistics), no gradients.
        """
        if x.dim() < 1:
            raise ValueError(f"x must have a leading batch dimension, got shape {tuple(x.shape)}")
        x = self._prep_x(x)
        return self._guarded(self._logits_batched, self._logits_looped, x, mutates=False)

    def _logits_batched(self, x: Tensor) -> Tensor:
        self._set_mode(False)
        with self._autocast():
            out = self._fwd_eval(tuple(self._sparams), tuple(self._sbuffers), x)
        return out.float()

    def _logits_looped(self, x: Tensor) -> Tensor:
        self._set_mode(False)
        with self._autocast():
            outs = [self._fwd_child(m, x) for m in self._children]
        return torch.stack(outs).float()

    @torch.no_grad()
    def score(self, x: Tensor, y: Tensor, kind: str = "correct") -> Tensor:
        """Every child's result on every case: shape (p, b).

        ``kind="correct"``: bool, top-1 prediction equals ``y``. ``kind="loss"``: float32
        per-example cross-entropy. Eval mode, no gradients, one batched forward for all children
        on the batched path.
        """
        if kind not in ("correct", "loss"):
            raise ValueError(f"kind must be 'correct' or 'loss', got {kind!r}")
        if y.dim() != 1 or x.dim() < 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"x (b, ...) and y (b,) must agree, got {tuple(x.shape)} and "
                             f"{tuple(y.shape)}")
        y = y.to(self.device, non_blocking=True)
        out = self.logits(x)
        if kind == "correct":
            return out.argmax(-1) == y
        per_ex = F.cross_entropy(out.flatten(0, 1), y.repeat(self.p), reduction="none")
        return per_ex.view(self.p, -1)

    # ------------------------------------------------------------------ selection

    @torch.no_grad()
    def adopt(self, winner: int, momentum_policy: str = "reset") -> None:
        """Copy child ``winner``'s parameters and buffers into every child.

        ``momentum_policy="reset"`` zeros every momentum buffer (a fresh optimiser each
        generation, as the released code does); ``"inherit"`` gives every child the winner's
        momentum buffer.
        """
        if momentum_policy not in MOMENTUM_POLICIES:
            raise ValueError(
                f"momentum_policy must be one of {MOMENTUM_POLICIES}, got {momentum_policy!r}")
        w = _check_index(winner, self.p, "winner")
        if self.path == "batched":
            state = self._sparams + self._sbuffers
            if self._smom is not None and momentum_policy == "inherit":
                state = state + self._smom
            # Clone first: copying a tensor's own slice over itself would alias.
            src = [t[w].clone().expand_as(t) for t in state]
            torch._foreach_copy_(state, src)
            mom = self._smom
        else:
            k, kb = self._k, self._kb
            dst: list[Tensor] = []
            src = []
            pick = {"p": (self._lparams, k), "b": (self._lbuffers, kb)}
            if self._lmom is not None and momentum_policy == "inherit":
                pick["m"] = (self._lmom, k)
            for flat, n in pick.values():
                win = flat[w * n:(w + 1) * n]
                for i in range(self.p):
                    if i != w:
                        dst.extend(flat[i * n:(i + 1) * n])
                        src.extend(win)
            if dst:
                torch._foreach_copy_(dst, src)
            mom = self._lmom
        if mom is not None and momentum_policy == "reset":
            torch._foreach_zero_(mom)

    # ------------------------------------------------------------------ modules & state

    def _child_state(self, i: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        if self.path == "batched":
            return ({n: t[i] for n, t in zip(self._pnames, self._sparams, strict=True)},
                    {n: t[i] for n, t in zip(self._bnames, self._sbuffers, strict=True)})
        m = self._children[i]
        return dict(m.named_parameters()), dict(m.named_buffers())

    def child_module(self, i: int) -> nn.Module:
        """A plain module (a copy, on the device, in eval mode) holding child i's state."""
        i = _check_index(i, self.p, "i")
        module = copy.deepcopy(self._pattern)
        _copy_state_into(module, *self._child_state(i))
        return module.eval()

    def parent_module(self) -> nn.Module:
        """`child_module(0)`: after `adopt` every child holds the parent, so this is it."""
        return self.child_module(0)

    def _iter_stacked(self) -> Iterator[tuple[str, str, Tensor]]:
        """(section, name, stacked tensor (p, ...)) over params, buffers and momentum."""
        if self.path == "batched":
            for n, t in zip(self._pnames, self._sparams, strict=True):
                yield "params", n, t
            for n, t in zip(self._bnames, self._sbuffers, strict=True):
                yield "buffers", n, t
            if self._smom is not None:
                for n, t in zip(self._pnames, self._smom, strict=True):
                    yield "momentum", n, t
            return
        k, kb = self._k, self._kb
        sections = [("params", self._pnames, self._lparams, k),
                    ("buffers", self._bnames, self._lbuffers, kb)]
        if self._lmom is not None:
            sections.append(("momentum", self._pnames, self._lmom, k))
        for sec, names, flat, n in sections:
            for j, name in enumerate(names):
                yield sec, name, torch.stack([flat[i * n + j] for i in range(self.p)])

    @torch.no_grad()
    def state_dict(self) -> dict:
        """All children's parameters, buffers and momentum buffers, stacked (p, ...).

        The layout is the same on both paths, so a checkpoint of one loads into the other.
        """
        sd: dict = {"format": _FORMAT, "p": self.p, "path": self.path,
                    "params": {}, "buffers": {}, "momentum": {} if self.momentum > 0 else None}
        for sec, name, t in self._iter_stacked():
            # The looped path's stacks are fresh copies already.
            sd[sec][name] = t.detach().clone() if self.path == "batched" else t.detach()
        return sd

    @torch.no_grad()
    def load_state_dict(self, sd: dict) -> None:
        """Restore a `state_dict` exactly (same p and architecture; either path)."""
        if not isinstance(sd, dict) or sd.get("format") != _FORMAT:
            raise ValueError(f"sd is not a Population state_dict (format {_FORMAT!r})")
        if sd["p"] != self.p:
            raise ValueError(f"sd has p={sd['p']}, this population has p={self.p}")
        if (sd["momentum"] is None) != (self.momentum == 0):
            raise ValueError("sd momentum buffers do not match this population's momentum="
                             f"{self.momentum}")
        expect = {"params": self._pnames, "buffers": self._bnames}
        if self.momentum > 0:
            expect["momentum"] = self._pnames
        for sec, names in expect.items():
            if set(sd[sec]) != set(names):
                raise ValueError(f"sd[{sec!r}] keys differ from the model's: "
                                 f"{sorted(set(sd[sec]) ^ set(names))}")
        if self.path == "batched":
            secs = [("params", self._sparams), ("buffers", self._sbuffers)]
            if self._smom is not None:
                secs.append(("momentum", self._smom))
            for sec, stacked in secs:
                for name, t in zip(expect[sec], stacked, strict=True):
                    src = sd[sec][name]
                    if src.shape != t.shape:
                        raise ValueError(f"sd[{sec!r}][{name!r}] has shape {tuple(src.shape)}, "
                                         f"expected {tuple(t.shape)}")
                    t.copy_(src)
            return
        k, kb = self._k, self._kb
        secs = [("params", self._lparams, k), ("buffers", self._lbuffers, kb)]
        if self._lmom is not None:
            secs.append(("momentum", self._lmom, k))
        for sec, flat, n in secs:
            for j, name in enumerate(expect[sec]):
                src = sd[sec][name]
                want = (self.p, *flat[j].shape)
                if tuple(src.shape) != want:
                    raise ValueError(f"sd[{sec!r}][{name!r}] has shape {tuple(src.shape)}, "
                                     f"expected {want}")
                for i in range(self.p):
                    flat[i * n + j].copy_(src[i])

    def __repr__(self) -> str:
        return (f"Population(p={self.p}, path={self.path!r}, device={str(self.device)!r}, "
                f"momentum={self.momentum}, weight_decay={self.weight_decay}, "
                f"nesterov={self.nesterov}, amp={self.amp})")
