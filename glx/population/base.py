"""What a population path is, and every state operation the two paths share.

A path holds the state of p children: parameters, buffers and (with momentum > 0) one SGD
momentum buffer per parameter. It shows that state as *views*: for each section (``"params"``,
``"buffers"``, ``"momentum"``) and tensor name, the p tensors of the p children (slices of
stacked tensors on the batched path, the modules' own tensors on the looped path). Everything
that only moves state is written once here, on those views: the SGD update, adoption and the
momentum policies, state dicts, one child's state and setting every child to one state, and a
child as a plain module. A path itself only trains and evaluates (`train_step`, `logits`).
"""

from __future__ import annotations

import contextlib
import copy
import numbers
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

PATHS = ("auto", "batched", "looped", "measure")
MOMENTUM_POLICIES = ("reset", "inherit")
FORMAT = "glx.population/1"
SECTIONS = ("params", "buffers", "momentum")
MOMENTUM_PREFIX = "momentum:"  # a child's momentum buffers in `child_state`: "momentum:<param>"

Views = dict[str, dict[str, list[Tensor]]]  # section -> name -> the p children's tensors


@dataclass
class Settings:
    """The options both paths read; one shared object, so that a compile failure on one path
    switches compiling off for the whole population."""

    p: int
    device: torch.device
    momentum: float
    weight_decay: float
    nesterov: bool
    amp: bool
    channels_last: bool
    compile: bool
    capture: bool = False

    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        # No cast cache: a CUDA graph cannot capture it, and each weight is cast once a step.
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                              cache_enabled=False)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def prep_x(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        return to_channels_last(x) if self.channels_last else x

    def maybe_compile(self, fn: Callable) -> Callable:
        """`torch.compile` ``fn`` when asked. Compile errors surface on the first call, so the
        wrapper then warns once (for the whole population) and runs uncompiled from then on."""
        if not self.compile:
            return fn
        try:
            compiled = torch.compile(fn)
        except Exception as e:  # any compiler failure means "run uncompiled"
            self.compile_failed(e)
            return fn

        def call(*args):
            if not self.compile:
                return fn(*args)
            try:
                return compiled(*args)
            except Exception as e:
                self.compile_failed(e)
                return fn(*args)

        return call

    def compile_failed(self, e: Exception) -> None:
        if self.compile:
            warnings.warn(f"torch.compile failed, running uncompiled: {type(e).__name__}: {e}",
                          stacklevel=5)
        self.compile = False


def to_channels_last(t: Tensor) -> Tensor:
    """Channels-last layout for the trailing (C, H, W) dims of a tensor of rank >= 4.

    For a 4-D tensor this is exactly ``torch.channels_last``; for stacked (p, N, C, H, W)
    tensors it makes every slice ``t[i]`` channels-last.
    """
    if t.dim() < 4:
        return t
    return t.movedim(-3, -1).contiguous().movedim(-1, -3)


def check_index(value: int | Tensor, p: int, name: str) -> int:
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


def check_policy(momentum_policy: str) -> None:
    if momentum_policy not in MOMENTUM_POLICIES:
        raise ValueError(
            f"momentum_policy must be one of {MOMENTUM_POLICIES}, got {momentum_policy!r}")


@torch.no_grad()
def sgd_update(params: list[Tensor], grads: list[Tensor | None], mom: list[Tensor] | None,
               lr: float | Tensor, s: Settings) -> None:
    """torch.optim.SGD's update (dampening 0) with foreach ops over every tensor at once::

        g   = grad + wd * w
        buf = momentum * buf + g          (buf starts at zero, so the first step gives buf = g)
        d   = g + momentum * buf if nesterov else buf
        w   = w - lr * d

    Like torch.optim.SGD, a parameter without a gradient (frozen, or unused this step) is left
    alone: no weight decay, no momentum update. ``lr`` is a Python number or a 0-dim tensor on
    the device; neither is read on the host, so the update never synchronises.
    """
    if any(g is None for g in grads):
        keep = [j for j, g in enumerate(grads) if g is not None]
        if not keep:
            return
        params = [params[j] for j in keep]
        grads = [grads[j] for j in keep]
        mom = None if mom is None else [mom[j] for j in keep]
    if s.weight_decay != 0:
        grads = torch._foreach_add(grads, params, alpha=s.weight_decay)
    if mom is not None:
        torch._foreach_mul_(mom, s.momentum)
        torch._foreach_add_(mom, grads)
        step = torch._foreach_add(grads, mom, alpha=s.momentum) if s.nesterov else mom
    else:
        step = grads
    if isinstance(lr, Tensor):  # as torch.optim.SGD with a tensor lr
        torch._foreach_add_(params, torch._foreach_mul(step, -lr))
    else:
        torch._foreach_add_(params, step, alpha=-lr)


class PopulationPath(ABC):
    """One way of holding and training p children (``"batched"`` or ``"looped"``).

    Subclasses build `views` (see the module docstring) in their constructor and implement
    `train_step` and `logits`; every other operation is shared and works on the views.
    """

    name: ClassVar[str]

    def __init__(self, s: Settings, pattern: nn.Module) -> None:
        self.s = s
        self.pattern = pattern  # a hook-free module of the architecture that never trains
        self.pnames = [n for n, _ in pattern.named_parameters()]
        self.bnames = [n for n, _ in pattern.named_buffers()]
        self.views: Views = {}

    @abstractmethod
    def train_step(self, x: Tensor, y: Tensor, lr: float | Tensor) -> tuple[Tensor, Tensor]:
        """One SGD step of every child on its minibatch: per-child (mean loss, correct count)."""

    @abstractmethod
    def logits(self, x: Tensor) -> Tensor:
        """Every child's float32 logits on the same inputs, eval mode: (p, b, classes)."""

    def sections(self) -> tuple[str, ...]:
        return SECTIONS if self.s.momentum > 0 else SECTIONS[:2]

    # ------------------------------------------------------------------ adoption

    @torch.no_grad()
    def adopt(self, w: int, momentum_policy: str) -> None:
        """Child ``w``'s parameters and buffers (and momentum under ``"inherit"``) into every
        child; ``"reset"`` zeros every momentum buffer."""
        secs = ["params", "buffers"]
        if momentum_policy == "inherit" and self.s.momentum > 0:
            secs.append("momentum")
        dst, src = [], []
        for sec in secs:
            for per_child in self.views[sec].values():
                dst += [t for i, t in enumerate(per_child) if i != w]
                src += [per_child[w]] * (self.s.p - 1)
        if dst:
            torch._foreach_copy_(dst, src)
        if momentum_policy == "reset" and self.s.momentum > 0:
            torch._foreach_zero_([t for ts in self.views["momentum"].values() for t in ts])

    # ------------------------------------------------------------------ all children's state

    @torch.no_grad()
    def state_dict(self) -> dict:
        sd: dict = {"format": FORMAT, "p": self.s.p, "path": self.name,
                    "params": {}, "buffers": {}, "momentum": None}
        for sec in self.sections():
            sd[sec] = {name: torch.stack(ts) for name, ts in self.views[sec].items()}
        return sd

    @torch.no_grad()
    def load_state_dict(self, sd: dict) -> None:
        if not isinstance(sd, dict) or sd.get("format") != FORMAT:
            raise ValueError(f"sd is not a Population state_dict (format {FORMAT!r})")
        if sd["p"] != self.s.p:
            raise ValueError(f"sd has p={sd['p']}, this population has p={self.s.p}")
        if (sd["momentum"] is None) != (self.s.momentum == 0):
            raise ValueError("sd momentum buffers do not match this population's momentum="
                             f"{self.s.momentum}")
        dst, src = [], []
        for sec in self.sections():
            views = self.views[sec]
            if set(sd[sec]) != set(views):
                raise ValueError(f"sd[{sec!r}] keys differ from the model's: "
                                 f"{sorted(set(sd[sec]) ^ set(views))}")
            for name, ts in views.items():
                t = sd[sec][name]
                want = (self.s.p, *ts[0].shape)
                if tuple(t.shape) != want:
                    raise ValueError(f"sd[{sec!r}][{name!r}] has shape {tuple(t.shape)}, "
                                     f"expected {want}")
                dst += ts
                src += list(t.to(ts[0].device).unbind(0))
        torch._foreach_copy_(dst, src)

    # ------------------------------------------------------------------ one child's state

    @torch.no_grad()
    def child_state(self, i: int) -> dict[str, Tensor]:
        state = {name: ts[i].clone() for sec in ("params", "buffers")
                 for name, ts in self.views[sec].items()}
        if self.s.momentum > 0:
            state.update({MOMENTUM_PREFIX + name: ts[i].clone()
                          for name, ts in self.views["momentum"].items()})
        return state

    @torch.no_grad()
    def load_parent_state(self, state: dict[str, Tensor], momentum_policy: str) -> None:
        inherit = momentum_policy == "inherit" and self.s.momentum > 0
        want = [name for sec in ("params", "buffers") for name in self.views[sec]]
        if inherit:
            want += [MOMENTUM_PREFIX + name for name in self.views["momentum"]]
        missing = [k for k in want if k not in state]
        if missing:
            raise ValueError(f"state lacks {missing[:5]} (momentum_policy={momentum_policy!r})")
        dst, src = [], []
        for sec in ("params", "buffers", "momentum") if inherit else ("params", "buffers"):
            prefix = MOMENTUM_PREFIX if sec == "momentum" else ""
            for name, ts in self.views[sec].items():
                t = state[prefix + name]
                if tuple(t.shape) != tuple(ts[0].shape):
                    raise ValueError(f"state[{prefix + name!r}] has shape {tuple(t.shape)}, "
                                     f"expected {tuple(ts[0].shape)}")
                t = t.to(ts[0].device)
                dst += ts
                src += [t] * len(ts)
        torch._foreach_copy_(dst, src)
        if momentum_policy == "reset" and self.s.momentum > 0:
            torch._foreach_zero_([t for ts in self.views["momentum"].values() for t in ts])

    @torch.no_grad()
    def child_module(self, i: int) -> nn.Module:
        module = copy.deepcopy(self.pattern)
        for sec, named in (("params", module.named_parameters()),
                           ("buffers", module.named_buffers())):
            for name, t in named:
                t.copy_(self.views[sec][name][i])
        return module.eval()
