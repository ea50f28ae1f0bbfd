"""The paper's CIFAR architectures in their 32x32 layouts (the common "pytorch-cifar" family).

Shared 32x32 adaptations: a 3x3 stride-1 stem, no initial max-pool, global average pooling
before the linear head (so other image sizes work; pools use ceil mode so small images do not
collapse to zero size).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import (
    BasicBlock,
    Bottleneck,
    InvertedResidual,
    SEPreActBlock,
    bn_relu_conv,
    conv_bn,
    relu,
    silu,
)

VGG_LAYOUTS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}


class VGG(nn.Module):
    """VGG with BatchNorm: 3x3 conv-BN-ReLU stacks and 2x2 max-pools, one linear head.

    "vgg16" is the paper's table entry; the released code's default model is most likely
    VGG19, so both are offered.
    """

    def __init__(self, layout: tuple[int | str, ...], num_classes: int, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers.append(conv_bn(cin, int(item)))
                cin = int(item)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ResNet(nn.Module):
    """Stem conv-BN-ReLU (64) -> four stages (64, 128, 256, 512 planes; strides 1, 2, 2, 2)
    -> global average -> linear. The block type gives ResNet18, ResNet50 or SENet18."""

    def __init__(self, block: type[nn.Module], depths: tuple[int, int, int, int],
                 num_classes: int, in_channels: int = 3):
        super().__init__()
        self.stem = conv_bn(in_channels, 64)
        stages: list[nn.Module] = []
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, 2 if (i > 0 and j == 0) else 1))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(out, 1).flatten(1))


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (4 x growth) -> BN-ReLU-3x3 conv (growth); output joins the input."""

    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.body = nn.Sequential(bn_relu_conv(cin, 4 * growth, 1), bn_relu_conv(4 * growth, growth, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.body(x), x], dim=1)


class DenseNet(nn.Module):
    """DenseNet-BC: 3x3 stem (2 x growth), dense blocks joined by BN-ReLU-1x1 conv + 2x2
    average-pool transitions that keep `reduction` of the channels, final BN-ReLU, linear."""

    def __init__(self, depths: tuple[int, ...], num_classes: int, in_channels: int = 3,
                 growth: int = 32, reduction: float = 0.5):
        super().__init__()
        c = 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, padding=1, bias=False)]
        for i, n in enumerate(depths):
            for _ in range(n):
                layers.append(DenseLayer(c, growth))
                c += growth
            if i < len(depths) - 1:
                out = int(math.floor(c * reduction))
                layers += [bn_relu_conv(c, out, 1), nn.AvgPool2d(2, ceil_mode=True)]
                c = out
        layers += [nn.BatchNorm2d(c), relu(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# (expansion, out channels, blocks, first stride); the second stage's stride is 1 (not 2)
# in the CIFAR variant, so the net downsamples 32 -> 4.
MOBILENETV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
                      (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    """MobileNetV2 (ReLU, 3x3 stride-1 stem of 32) -> 1x1 conv to 1280 -> global average -> linear."""

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = [conv_bn(in_channels, 32)]
        c = 32
        for expand, out, n, stride in MOBILENETV2_STAGES:
            for j in range(n):
                layers.append(InvertedResidual(c, out, stride=stride if j == 0 else 1,
                                               expand=expand, conv_shortcut=True))
                c = out
        layers += [conv_bn(c, 1280, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# (expansion, out channels, blocks, kernel, first stride); stem stride 1 for 32x32 input.
EFFICIENTNETB0_STAGES = ((1, 16, 1, 3, 1), (6, 24, 2, 3, 2), (6, 40, 2, 5, 2), (6, 80, 3, 3, 2),
                         (6, 112, 3, 5, 1), (6, 192, 4, 5, 2), (6, 320, 1, 3, 1))


class EfficientNetB0(nn.Module):
    """EfficientNet-B0 in the CIFAR layout: SiLU, MBConv blocks with SE (a quarter of each
    block's input width), stochastic depth rising linearly to `drop_path` over the blocks,
    dropout `dropout` before a linear head on the 320 channels (no 1280 head conv).

    Both kinds of randomness call `F.dropout` with the module's training flag and draw from
    torch's global RNG; under `torch.func.vmap` in training mode pass `randomness="different"`
    (or "same"), or set both rates to 0.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, dropout: float = 0.2,
                 drop_path: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [conv_bn(in_channels, 32, act=silu)]
        c = 32
        total = sum(s[2] for s in EFFICIENTNETB0_STAGES)
        b = 0
        for expand, out, n, k, stride in EFFICIENTNETB0_STAGES:
            for j in range(n):
                layers.append(InvertedResidual(c, out, k=k, stride=stride if j == 0 else 1,
                                               expand=expand, act=silu, se=max(1, c // 4),
                                               drop=drop_path * b / total))
                c = out
                b += 1
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.dropout = float(dropout)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.dropout(self.features(x), self.dropout, training=self.training)
        return self.head(out)


def vgg16(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """VGG16 with BatchNorm (about 14.7M parameters at 10 classes)."""
    return VGG(VGG_LAYOUTS["vgg16"], num_classes, input_shape[0])


def vgg19(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """VGG19 with BatchNorm (about 20.0M parameters); most likely the released code's "VGG16"."""
    return VGG(VGG_LAYOUTS["vgg19"], num_classes, input_shape[0])


def resnet18(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """ResNet18, basic blocks (2, 2, 2, 2) (about 11.2M parameters)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, input_shape[0])


def resnet50(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """ResNet50, bottleneck blocks (3, 4, 6, 3) (about 23.5M parameters)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, input_shape[0])


def senet18(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """SENet18: ResNet18 layout with pre-activation SE blocks (about 11.3M parameters)."""
    return ResNet(SEPreActBlock, (2, 2, 2, 2), num_classes, input_shape[0])


def densenet121(num_classes: int, input_shape: tuple[int, ...], growth: int = 32) -> nn.Module:
    """DenseNet121-BC, blocks (6, 12, 24, 16), growth 32 (about 7.0M parameters)."""
    return DenseNet((6, 12, 24, 16), num_classes, input_shape[0], growth=growth)


def mobilenetv2(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """MobileNetV2, CIFAR strides (about 2.3M parameters)."""
    return MobileNetV2(num_classes, input_shape[0])


def efficientnetb0(num_classes: int, input_shape: tuple[int, ...], dropout: float = 0.2,
                   drop_path: float = 0.2) -> nn.Module:
    """EfficientNet-B0, CIFAR layout; see `EfficientNetB0` for the randomness under vmap."""
    return EfficientNetB0(num_classes, input_shape[0], dropout=dropout, drop_path=drop_path)
