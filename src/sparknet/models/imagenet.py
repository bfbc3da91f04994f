"""ImageNet-class networks in the layouts of the BVLC Caffe definitions: AlexNet, CaffeNet and
GoogLeNet (sparknet's own code; no Caffe file is read).

Layers, shapes, pooling (Caffe rounds pooled sizes up: ``ceil_mode``), LRN and dropout follow
``models/bvlc_alexnet``, ``models/bvlc_reference_caffenet`` and ``models/bvlc_googlenet`` of
BVLC Caffe; the deploy definitions have the same parameter shapes in the same order
(``tests/models/test_imagenet.py`` checks them against ``sparknet.caffe``). The weight fillers
are those of the BVLC ``train_val`` definitions, drawn from torch's global generator, so the
engine's seed picks them. Two changes let the networks take smaller images than 227x227 or
224x224: AlexNet's ``pool5`` output is averaged to 6x6 (``AdaptiveAvgPool2d``, a no-op at
227x227, as in torchvision) and GoogLeNet's last 7x7 average pool averages whatever is left.
"""

from __future__ import annotations

import math

import torch
from torch import nn

IMAGENET_CLASSES = 1000


def _gaussian(layer: nn.Conv2d | nn.Linear, std: float, bias: float) -> None:
    nn.init.normal_(layer.weight, 0.0, std)
    assert layer.bias is not None
    nn.init.constant_(layer.bias, bias)


def _xavier(layer: nn.Conv2d | nn.Linear, bias: float) -> None:
    """Caffe's 'xavier' filler: U(-a, a), a = sqrt(3 / fan_in); a constant bias."""
    bound = math.sqrt(3.0 / layer.weight[0].numel())
    nn.init.uniform_(layer.weight, -bound, bound)
    assert layer.bias is not None
    nn.init.constant_(layer.bias, bias)


def _lrn() -> nn.LocalResponseNorm:
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


def _max_pool(kernel: int, stride: int, pad: int = 0) -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel, stride, pad, ceil_mode=True)


class AlexNet(nn.Module):
    """BVLC AlexNet (``lrn_first``: ReLU -> LRN -> pool) or CaffeNet (ReLU -> pool -> LRN)."""

    def __init__(self, num_classes: int = IMAGENET_CLASSES, *, lrn_first: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, stride=4)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1, groups=2)
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.relu = nn.ReLU(inplace=True)
        self.norm = _lrn()
        self.pool = _max_pool(3, 2)
        self.fit = nn.AdaptiveAvgPool2d((6, 6))
        self.drop = nn.Dropout(0.5)
        self.lrn_first = lrn_first
        # BVLC train_val: AlexNet's biases 0 / 0.1, CaffeNet's 0 / 1.
        one = 0.1 if lrn_first else 1.0
        for layer, std, bias in ((self.conv1, 0.01, 0.0), (self.conv2, 0.01, one),
                                 (self.conv3, 0.01, 0.0), (self.conv4, 0.01, one),
                                 (self.conv5, 0.01, one), (self.fc6, 0.005, one),
                                 (self.fc7, 0.005, one), (self.fc8, 0.01, 0.0)):
            _gaussian(layer, std, bias)

    def _block(self, x: torch.Tensor) -> torch.Tensor:
        if self.lrn_first:
            return self.pool(self.norm(self.relu(x)))
        return self.norm(self.pool(self.relu(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._block(self.conv1(x))
        x = self._block(self.conv2(x))
        x = self.relu(self.conv3(x))
        x = self.relu(self.conv4(x))
        x = self.pool(self.relu(self.conv5(x)))
        x = torch.flatten(self.fit(x), 1)
        x = self.drop(self.relu(self.fc6(x)))
        x = self.drop(self.relu(self.fc7(x)))
        return self.fc8(x)


class _ConvReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int = 1,
                 padding: int = 0) -> None:
        conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)
        _xavier(conv, 0.2)  # BVLC GoogLeNet: xavier weights, biases 0.2
        super().__init__(conv, nn.ReLU(inplace=True))


class Inception(nn.Module):
    """One inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1, concatenated."""

    def __init__(self, cin: int, c1: int, r3: int, c3: int, r5: int, c5: int,
                 proj: int) -> None:
        super().__init__()
        self.branch1 = _ConvReLU(cin, c1, 1)
        self.branch3 = nn.Sequential(_ConvReLU(cin, r3, 1), _ConvReLU(r3, c3, 3, padding=1))
        self.branch5 = nn.Sequential(_ConvReLU(cin, r5, 1), _ConvReLU(r5, c5, 5, padding=2))
        self.branch_pool = nn.Sequential(_max_pool(3, 1, 1), _ConvReLU(cin, proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x),
                          self.branch_pool(x)], 1)


# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection) of inception 3a ... 5b
_INCEPTIONS = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128), "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    """BVLC GoogLeNet as deployed (no auxiliary classifiers), dropout 0.4 before the last layer."""

    def __init__(self, num_classes: int = IMAGENET_CLASSES) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _ConvReLU(3, 64, 7, stride=2, padding=3), _max_pool(3, 2), _lrn(),
            _ConvReLU(64, 64, 1), _ConvReLU(64, 192, 3, padding=1), _lrn(), _max_pool(3, 2))
        blocks: list[nn.Module] = []
        channels = 192
        for name, widths in _INCEPTIONS.items():
            if name in ("4a", "5a"):
                blocks.append(_max_pool(3, 2))
            blocks.append(Inception(channels, *widths))
            c1, _, c3, _, c5, proj = widths
            channels = c1 + c3 + c5 + proj
        self.inceptions = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.4)
        self.classifier = nn.Linear(channels, num_classes)
        _xavier(self.classifier, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.inceptions(self.stem(x)))
        return self.classifier(self.drop(torch.flatten(x, 1)))


def alexnet(num_classes: int = IMAGENET_CLASSES) -> nn.Module:
    return AlexNet(num_classes)


def caffenet(num_classes: int = IMAGENET_CLASSES) -> nn.Module:
    return AlexNet(num_classes, lrn_first=False)


def googlenet(num_classes: int = IMAGENET_CLASSES) -> nn.Module:
    return GoogLeNet(num_classes)
