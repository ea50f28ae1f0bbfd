"""Building blocks shared by the glx model zoo.

Every block is written for the batched population path (`torch.func.functional_call` under
`torch.func.vmap`): activations are never in-place, residual sums build new tensors, and no
forward pass reads a tensor's value back into Python.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Act = Callable[[], nn.Module]


def relu() -> nn.Module:
    """A non-inplace ReLU (in-place activations break autograd under vmap)."""
    return nn.ReLU(inplace=False)


def silu() -> nn.Module:
    """A non-inplace SiLU ("swish")."""
    return nn.SiLU(inplace=False)


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, *, groups: int = 1,
            act: Act | None = relu, dims: int = 2) -> nn.Sequential:
    """conv (no bias: BatchNorm's shift replaces it) -> BatchNorm -> optional activation."""
    conv = nn.Conv2d if dims == 2 else nn.Conv1d
    norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    layers = [conv(cin, cout, k, stride, padding=k // 2, groups=groups, bias=False), norm(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def bn_relu_conv(cin: int, cout: int, k: int) -> nn.Sequential:
    """The pre-activation order (BatchNorm -> ReLU -> conv) used by DenseNet."""
    return nn.Sequential(nn.BatchNorm2d(cin), relu(),
                         nn.Conv2d(cin, cout, k, padding=k // 2, bias=False))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole examples of a residual branch with probability p.

    The mask comes from `F.dropout` on a ones tensor, so it rescales by 1/(1-p) and, under
    vmap, follows the `randomness=` argument like any dropout.
    """
    if p <= 0.0 or not training:
        return x
    keep = F.dropout(x.new_ones((x.shape[0],) + (1,) * (x.dim() - 1)), p, training=True)
    return x * keep


class SqueezeExcite(nn.Module):
    """Channel gating: global average -> 1x1 conv -> act -> 1x1 conv -> sigmoid -> scale."""

    def __init__(self, channels: int, reduced: int, act: Act = relu):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = act()
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.adaptive_avg_pool2d(x, 1)
        w = torch.sigmoid(self.expand(self.act(self.reduce(w))))
        return x * w


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (ResNet18/34); post-activation."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, planes, 3, stride), conv_bn(planes, planes, 3, act=None))
        self.shortcut = _projection(cin, planes, stride)
        self.act = relu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand (x4) plus a shortcut (ResNet50); post-activation."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.body = nn.Sequential(conv_bn(cin, planes, 1), conv_bn(planes, planes, 3, stride),
                                  conv_bn(planes, out, 1, act=None))
        self.shortcut = _projection(cin, out, stride)
        self.act = relu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class SEPreActBlock(nn.Module):
    """Pre-activation basic block with squeeze-excitation on its branch (SENet18).

    As in the common CIFAR SENet: the projection shortcut is a bare 1x1 conv applied to the
    pre-activated input, and the SE bottleneck is planes // 16.
    """

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.pre = nn.Sequential(nn.BatchNorm2d(cin), relu())
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, padding=1, bias=False)
        self.mid = nn.Sequential(nn.BatchNorm2d(planes), relu())
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.se = SqueezeExcite(planes, planes // 16)
        self.project = (nn.Conv2d(cin, planes, 1, stride, bias=False)
                        if stride != 1 or cin != planes else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pre(x)
        shortcut = x if self.project is None else self.project(out)
        out = self.se(self.conv2(self.mid(self.conv1(out))))
        return out + shortcut


def _projection(cin: int, cout: int, stride: int) -> nn.Module:
    """Identity when shapes match, else a strided 1x1 conv-BN."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return conv_bn(cin, cout, 1, stride, act=None)


class InvertedResidual(nn.Module):
    """MobileNetV2 / EfficientNet block: 1x1 expand -> depthwise kxk -> [SE] -> 1x1 project.

    `se` is the SE bottleneck width (0: no SE). The shortcut is the identity when stride is 1
    and widths match; `conv_shortcut` adds a 1x1 conv-BN shortcut for stride 1 with a width
    change (the common CIFAR MobileNetV2 does this). `drop` is the stochastic-depth rate of the
    residual branch (used only when there is a shortcut).
    """

    def __init__(self, cin: int, cout: int, *, k: int = 3, stride: int = 1, expand: int = 6,
                 act: Act = relu, se: int = 0, conv_shortcut: bool = False, drop: float = 0.0):
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = [conv_bn(cin, mid, 1, act=act)] if expand != 1 else []
        layers.append(conv_bn(mid, mid, k, stride, groups=mid, act=act))
        if se:
            layers.append(SqueezeExcite(mid, se, act=act))
        layers.append(conv_bn(mid, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.drop = drop
        self.shortcut: nn.Module | None = None
        if stride == 1 and cin == cout:
            self.shortcut = nn.Identity()
        elif stride == 1 and conv_shortcut:
            self.shortcut = conv_bn(cin, cout, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.shortcut is None:
            return out
        return drop_path(out, self.drop, self.training) + self.shortcut(x)
