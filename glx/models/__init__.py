"""glx.models: the model zoo, built by name.

    build(name, num_classes, input_shape, **kw) -> nn.Module
    NAMES                      # every name `build` knows
    count_parameters(model) -> int

Small models: "mlp" (any input), "cnn" (images, sized for 8x8 digits), "cnn1d" (1D signals
such as MNIST-1D), "fastnet" (a fast CIFAR network). The paper's CIFAR architectures:
"vgg16", "vgg19", "resnet18", "resnet50", "densenet121", "mobilenetv2", "senet18",
"efficientnetb0".

Every model runs under `torch.func.functional_call` + `torch.func.vmap` with stacked parameters
and buffers, including BatchNorm running-statistics updates in training mode (each stacked copy
updates its own statistics). EfficientNet-B0's dropout and stochastic depth need
`randomness="different"` under vmap in training mode.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch import nn

from . import cifar, small

Builder = Callable[..., nn.Module]

# name -> (builder, input rank it accepts: 2 = (C, L), 3 = (C, H, W), None = any)
_REGISTRY: dict[str, tuple[Builder, int | None]] = {
    "mlp": (small.MLP, None),
    "cnn": (small.SmallCNN, 3),
    "cnn1d": (small.CNN1d, 2),
    "fastnet": (small.FastNet, 3),
    "vgg16": (cifar.vgg16, 3),
    "vgg19": (cifar.vgg19, 3),
    "resnet18": (cifar.resnet18, 3),
    "resnet50": (cifar.resnet50, 3),
    "densenet121": (cifar.densenet121, 3),
    "mobilenetv2": (cifar.mobilenetv2, 3),
    "senet18": (cifar.senet18, 3),
    "efficientnetb0": (cifar.efficientnetb0, 3),
}

NAMES: tuple[str, ...] = tuple(_REGISTRY)

_RANK_WORDS = {2: "(C, L) signals", 3: "(C, H, W) images"}


def build(name: str, num_classes: int, input_shape: Sequence[int], *, seed: int | None = None,
          **kw) -> nn.Module:
    """Build model `name` for `num_classes` classes and per-example inputs of `input_shape`.

    `input_shape` excludes the batch: (C, H, W) for images, (C, L) for 1D signals; its first
    entry sets the input channels. Extra keyword arguments go to the model (e.g. `hidden` for
    "mlp", `widths` for "fastnet", `dropout`/`drop_path` for "efficientnetb0").

    `seed`: when given, weights are initialised from `torch.manual_seed(seed)` inside a forked
    RNG, so the global RNG is left untouched; when None, initialisation draws from torch's
    global RNG like any `nn.Module` (callers seed it, e.g. under `torch.random.fork_rng`).
    """
    if name not in _REGISTRY:
        raise ValueError(f"name must be one of {NAMES}, got {name!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    shape = _check_shape(name, input_shape)
    builder, _ = _REGISTRY[name]
    allowed = [p for p in inspect.signature(builder).parameters
               if p not in ("num_classes", "input_shape")]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ValueError(f"kw {unknown} not accepted by model {name!r}; it accepts {allowed}")
    if seed is None:
        return builder(num_classes, shape, **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(num_classes, shape, **kw)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _check_shape(name: str, input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be a sequence of ints, got {input_shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be non-empty with positive sizes, got {input_shape!r}")
    rank = _REGISTRY[name][1]
    if rank is not None and len(shape) != rank:
        raise ValueError(f"model {name!r} takes {_RANK_WORDS[rank]}; input_shape {shape} "
                         f"has {len(shape)} dims, expected {rank}")
    return shape


__all__ = ["NAMES", "build", "count_parameters"]
