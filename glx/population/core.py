"""`Population`: p children of one parent, trained and scored together, on either path."""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glx.population import choose
from glx.population.base import PATHS, PopulationPath, Settings, check_index, check_policy
from glx.population.batched import BatchedPath, CapturedStep
from glx.population.looped import LoopedPath
from glx.population.memory import keep_freed_memory

_PATH_CLASSES: dict[str, type[PopulationPath]] = {"batched": BatchedPath, "looped": LoopedPath}


def _build(model_fn: Callable[[], nn.Module], seed: int, device: torch.device) -> nn.Module:
    """Build one model under ``seed`` without touching the caller's global RNG state.

    Model initialisers draw from the global RNG, so the build runs inside `fork_rng`, which
    restores every RNG state it saved on exit.
    """
    devices = choose.fork_devices(device)
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


def child_seed(seed: int, child: int) -> int:
    """The build seed of ``child`` (its index in the whole population) under independent
    initialisation: ``seed`` itself for child 0, so that child 0 is the shared-init model, and
    for the others a 63-bit mix of (seed, child) (splitmix64), so that no child of one seed
    shares its initialisation with another seed's child 0 (``seed + child`` would: child 1 of
    seed 0 would be seed 1's model)."""
    if child == 0:
        return int(seed)
    z = (int(seed) + int(child) * 0x9E3779B97F4A7C15) % (1 << 64)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % (1 << 64)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % (1 << 64)
    return (z ^ (z >> 31)) >> 1


class Population:
    """p children of one parent, trained with SGD and scored in one object.

    Args:
        model_fn: builds one model (the same architecture every call). Its initialisation may
            use the global RNG: every build here runs inside `torch.random.fork_rng` after
            seeding, so the caller's RNG state is left untouched.
        p: number of children (1 = plain SGD).
        device: where all state lives.
        path: ``"auto"``, ``"batched"``, ``"looped"`` or ``"measure"`` (see
            `glx.population.choose`).
        momentum, weight_decay, nesterov: SGD hyper-parameters (dampening is 0).
        independent_init: when True child i is built under ``child_seed(seed, first_child + i)``
            (different random initialisations, none of them another seed's child 0); otherwise
            one model is built under ``seed`` and every child is an exact copy of it. Child 0
            (of the whole population) is the same model either way.
        first_child: the global index of this population's first child (a distributed rank
            that holds children lo..hi-1 passes lo), so that each child's initialisation
            depends on its index in the whole population only.
        seed: seed of the builds above.
        amp: bfloat16 autocast for forward passes; None means on for CUDA, off elsewhere. The
            master weights, gradients, momentum buffers and losses stay float32.
        channels_last: store 4-D parameters and inputs channels-last (faster convolutions on
            recent GPUs).
        compile: wrap the forward in `torch.compile`; if compiling fails the population warns
            and continues uncompiled.
        capture: run the batched training step as a captured CUDA graph
            (`glx.population.batched.CapturedStep`); None means on for CUDA, off elsewhere.
            It needs the batched path and CUDA; if capturing fails the population warns and
            runs eagerly.
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
        first_child: int = 0,
        seed: int = 0,
        amp: bool | None = None,
        channels_last: bool = False,
        compile: bool = False,
        capture: bool | None = False,
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
        for name, value in (("amp", amp), ("capture", capture)):
            if value not in (None, True, False):
                raise ValueError(f"{name} must be None, True or False, got {value!r}")
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device is not a torch device: {device!r}") from e
        if capture and device.type != "cuda":
            raise ValueError(f"capture=True needs a CUDA device, got device={str(device)!r}")
        if capture and path == "looped":
            raise ValueError("capture=True needs the batched path, got path='looped'")
        if capture and compile:
            raise ValueError("capture=True and compile=True: choose one")

        self.p = int(p)
        self.device = device
        self.independent_init = bool(independent_init)
        self.seed = int(seed)
        self._settings = Settings(
            p=self.p, device=device, momentum=float(momentum), weight_decay=float(weight_decay),
            nesterov=bool(nesterov), amp=(device.type == "cuda") if amp is None else bool(amp),
            channels_last=bool(channels_last), compile=bool(compile),
            capture=(device.type == "cuda" and not compile) if capture is None else capture)
        self._model_fn = model_fn
        if device.type == "cpu":
            keep_freed_memory()

        if independent_init:
            models = [_build(model_fn, child_seed(self.seed, int(first_child) + i), device)
                      for i in range(self.p)]
        else:
            first = _build(model_fn, self.seed, device)
            models = [first] + [copy.deepcopy(first) for _ in range(self.p - 1)]
        if self._settings.channels_last:
            models = [m.to(memory_format=torch.channels_last) for m in models]
        # A private copy that never trains and carries no hooks: what child_module and a
        # switch of path copy.
        self._pattern = copy.deepcopy(models[0])
        start, self.path_reason, pending = choose.choose_path(path, device, models[0])
        self._requested_path = path
        self._auto_pending = pending is not None
        self._measure_pending = pending == "measure"
        self._impl: PopulationPath = _PATH_CLASSES[start](self._settings, self._pattern, models)

    @classmethod
    def from_parent(cls, module: nn.Module, p: int, **kw) -> Population:
        """p children that are exact copies of ``module`` (its parameters and buffers).

        Keyword arguments are those of `Population` (``independent_init`` excepted); the device
        defaults to the module's. ``module`` itself is copied, never changed. To give the
        children momentum buffers too, follow with `load_parent_state`.
        """
        if not isinstance(module, nn.Module):
            raise ValueError(f"module must be an nn.Module, got {type(module).__name__}")
        if kw.get("independent_init"):
            raise ValueError("independent_init=True: from_parent copies one module into "
                             "every child")
        if "device" not in kw:
            first = next(module.parameters(), None)
            kw["device"] = first.device if first is not None else "cpu"
        parent = copy.deepcopy(module)
        return cls(lambda: copy.deepcopy(parent), p, **kw)

    # ------------------------------------------------------------------ settings

    @property
    def path(self) -> str:
        """The path the children run on now: ``"batched"`` or ``"looped"``."""
        return self._impl.name

    momentum = property(lambda self: self._settings.momentum)
    weight_decay = property(lambda self: self._settings.weight_decay)
    nesterov = property(lambda self: self._settings.nesterov)
    amp = property(lambda self: self._settings.amp)
    channels_last = property(lambda self: self._settings.channels_last)
    compile = property(lambda self: self._settings.compile,
                       doc="Whether the forward runs compiled (False after a compile failure).")

    @property
    def captured(self) -> bool:
        """Whether the training step runs as a captured CUDA graph."""
        return isinstance(self._impl, BatchedPath) and self._impl.captured is not None

    def set_capture(self, on: bool) -> None:
        """Run the training step as a captured CUDA graph (True) or eagerly (False); capturing
        needs CUDA, the batched path, and no `compile`."""
        if on not in (True, False):
            raise ValueError(f"on must be True or False, got {on!r}")
        if on and self.device.type != "cuda":
            raise ValueError(f"capture needs a CUDA device, got device={str(self.device)!r}")
        if on and self.compile:
            raise ValueError("capture and compile=True: choose one")
        if on and self.path != "batched":
            raise ValueError(f"capture needs the batched path, this population runs {self.path!r}")
        self._settings.capture = on
        if isinstance(self._impl, BatchedPath):
            self._impl.captured = CapturedStep(self._impl) if on else None

    def _switch(self, path: str, reason: str, pending: bool) -> None:
        """Move every child's state onto the other path; ``pending``: the auto check stays."""
        sd = self.state_dict()
        models = [copy.deepcopy(self._pattern) for _ in range(self.p)]
        self._impl = _PATH_CLASSES[path](self._settings, self._pattern, models)
        self.path_reason, self._auto_pending = reason, pending
        self.load_state_dict(sd)

    # ------------------------------------------------------------------ training

    def train_step(self, x: Tensor, y: Tensor, lr: float | Tensor) -> tuple[Tensor, Tensor]:
        """One SGD step for every child, child i on minibatch ``(x[i], y[i])``.

        Args:
            x: inputs of shape (p, B, ...).
            y: integer labels of shape (p, B).
            lr: learning rate: a Python number >= 0, or a 0-dim floating tensor on the
                population's device (not range-checked: reading it would synchronise).

        Returns:
            ``(loss, correct)``: per-child mean cross-entropy (float32, shape (p,)) and number of
            correct top-1 predictions (int64, shape (p,)), both on the device, not synchronised.
        """
        if x.dim() < 2 or x.shape[0] != self.p:
            raise ValueError(f"x must have shape (p={self.p}, B, ...), got {tuple(x.shape)}")
        if tuple(y.shape) != tuple(x.shape[:2]):
            raise ValueError(f"y must have shape {tuple(x.shape[:2])}, got {tuple(y.shape)}")
        if isinstance(lr, Tensor):
            if lr.dim() != 0 or not lr.is_floating_point() or lr.device.type != self.device.type:
                raise ValueError(f"lr must be a 0-dim floating tensor on {self.device.type}, got "
                                 f"shape {tuple(lr.shape)}, {lr.dtype} on {lr.device}")
        elif not isinstance(lr, numbers.Real) or float(lr) < 0:
            raise ValueError(f"lr must be a number >= 0, got {lr!r}")
        else:
            lr = float(lr)
        x = self._settings.prep_x(x)
        y = y.to(self.device, non_blocking=True)
        if self._measure_pending:
            choose.measure(self, x, y, lr)
        if self._auto_pending:
            out = choose.guarded(self, "train_step", x, y, lr)
            self._auto_pending = False
            if self.path == "batched":
                self.path_reason += ", vmap check passed"
            return out
        return choose.guarded(self, "train_step", x, y, lr)

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:
        """Logits of every child on the same inputs ``x`` (b, ...): float32 (p, b, classes).

        Eval mode (BatchNorm uses running statistics), no gradients.
        """
        if x.dim() < 1:
            raise ValueError(f"x must have a leading batch dimension, got shape {tuple(x.shape)}")
        return choose.guarded(self, "logits", self._settings.prep_x(x), mutates=False)

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

    def adopt(self, winner: int | Tensor, momentum_policy: str = "reset") -> None:
        """Copy child ``winner``'s parameters and buffers into every child.

        ``momentum_policy="reset"`` zeros every momentum buffer (a fresh optimiser each
        generation, as the released code does); ``"inherit"`` gives every child the winner's
        momentum buffer.
        """
        check_policy(momentum_policy)
        self._impl.adopt(check_index(winner, self.p, "winner"), momentum_policy)

    # ------------------------------------------------------------------ modules & state

    def child_module(self, i: int) -> nn.Module:
        """A plain module (a copy, on the device, in eval mode) holding child i's state."""
        return self._impl.child_module(check_index(i, self.p, "i"))

    def parent_module(self) -> nn.Module:
        """`child_module(0)`: after `adopt` every child holds the parent, so this is it."""
        return self.child_module(0)

    def child_state(self, i: int) -> dict[str, Tensor]:
        """Child i's parameters and buffers under their module names, and (momentum > 0) its
        momentum buffers under ``"momentum:" + parameter name``: copies, on the device.

        With `load_parent_state` this is what moves one child into another population (a
        winner broadcast between processes, a parent into a new population).
        """
        return self._impl.child_state(check_index(i, self.p, "i"))

    def load_parent_state(self, state: dict[str, Tensor], momentum_policy: str = "reset"
                          ) -> None:
        """Set every child to ``state`` (as `child_state` returns it): parameters and buffers;
        momentum buffers from ``state`` under ``"inherit"``, zeros under ``"reset"``."""
        check_policy(momentum_policy)
        if not isinstance(state, dict):
            raise ValueError(f"state must be a dict of tensors, got {type(state).__name__}")
        self._impl.load_parent_state(state, momentum_policy)

    def state_dict(self) -> dict:
        """All children's parameters, buffers and momentum buffers, stacked (p, ...) copies.

        The layout is the same on both paths, so a checkpoint of one loads into the other.
        """
        return self._impl.state_dict()

    def load_state_dict(self, sd: dict) -> None:
        """Restore a `state_dict` exactly (same p and architecture; either path)."""
        self._impl.load_state_dict(sd)

    def __repr__(self) -> str:
        return (f"Population(p={self.p}, path={self.path!r}, device={str(self.device)!r}, "
                f"momentum={self.momentum}, weight_decay={self.weight_decay}, "
                f"nesterov={self.nesterov}, amp={self.amp})")
