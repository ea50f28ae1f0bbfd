"""Small models for quick runs: an MLP, small 2D and 1D CNNs, and a fast CIFAR network."""

from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import conv_bn, relu


class MLP(nn.Module):
    """Flatten -> (Linear -> ReLU) per hidden width -> Linear."""

    def __init__(self, num_classes: int, input_shape: tuple[int, ...],
                 hidden: tuple[int, ...] = (128, 128)):
        super().__init__()
        widths = [math.prod(input_shape), *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), relu()]
        layers.append(nn.Linear(widths[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Two conv-BN-ReLU blocks, a 2x2 max-pool, a 4x4 average grid, a linear head.

    Sized for 8x8 digits (the pool leaves exactly 4x4); larger images are averaged down to 4x4.
    """

    def __init__(self, num_classes: int, input_shape: tuple[int, ...],
                 channels: tuple[int, int] = (16, 32)):
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(conv_bn(input_shape[0], c1), conv_bn(c1, c2),
                                      nn.MaxPool2d(2, ceil_mode=True), nn.AdaptiveAvgPool2d(4))
        self.head = nn.Linear(c2 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class CNN1d(nn.Module):
    """Three conv1d-BN-ReLU layers (the last two stride 2) and a linear head on the flat map.

    The head sees every position (no global pooling) because in MNIST-1D where a pattern sits
    carries information.
    """

    def __init__(self, num_classes: int, input_shape: tuple[int, ...],
                 channels: tuple[int, int, int] = (32, 64, 64)):
        super().__init__()
        c1, c2, c3 = channels
        self.features = nn.Sequential(conv_bn(input_shape[0], c1, 5, dims=1),
                                      conv_bn(c1, c2, 3, 2, dims=1), conv_bn(c2, c3, 3, 2, dims=1))
        length = input_shape[1]
        for _ in range(2):  # each stride-2, pad-1, k-3 conv maps L to ceil(L / 2)
            length = (length + 1) // 2
        self.head = nn.Linear(c3 * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class FastNet(nn.Module):
    """A fast CIFAR network in the style of the speed-run scripts (about 2M parameters at 10 classes).

    stem conv -> per width: conv -> 2x2 max-pool -> BN -> ReLU -> conv-BN-ReLU -> global max-pool
    -> linear head without bias, its logits scaled by `logit_scale` (the speed-run scripts use
    a small fixed scale to calm the early steps).
    """

    def __init__(self, num_classes: int, input_shape: tuple[int, ...],
                 widths: tuple[int, ...] = (64, 256, 256), stem: int = 32,
                 logit_scale: float = 0.125):
        super().__init__()
        layers: list[nn.Module] = [conv_bn(input_shape[0], stem)]
        cin = stem
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.MaxPool2d(2, ceil_mode=True),
                       nn.BatchNorm2d(w), relu(), conv_bn(w, w)]
            cin = w
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes, bias=False)
        self.logit_scale = float(logit_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.logit_scale
