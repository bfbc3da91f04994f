"""Built-in networks: ``lenet`` and ``cnn`` for 1x28x28 inputs and 10 classes (Fashion-MNIST,
MNIST); ``alexnet``, ``caffenet``, ``googlenet`` (``models/imagenet.py``) and ``resnet50``
(``models/resnet.py``) for 3-channel images and ImageNet's 1000 classes.

A built-in reference is ``NAME`` (its default number of classes) or ``NAME#N`` (N classes),
e.g. ``resnet50#10`` for a folder of images in 10 classes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from sparknet.errors import ConfigError
from sparknet.models.imagenet import alexnet, caffenet, googlenet
from sparknet.models.resnet import resnet50

ModelFactory = Callable[[], nn.Module]


class SizedFactory(Protocol):
    """A built-in network's factory: the number of classes, or its default."""

    def __call__(self, num_classes: int = ...) -> nn.Module: ...


def _caffe_xavier_(module: nn.Module) -> None:
    """Caffe's default 'xavier' filler: U(-a, a) with a = sqrt(3 / fan_in); biases zero."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            fan_in = layer.weight[0].numel()
            bound = math.sqrt(3.0 / fan_in)
            nn.init.uniform_(layer.weight, -bound, bound)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class LeNet(nn.Module):
    """LeNet in Caffe's layout: conv 20 -> pool -> conv 50 -> pool -> fc 500 -> relu -> fc 10."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.ip1 = nn.Linear(50 * 4 * 4, 500)
        self.relu1 = nn.ReLU()
        self.ip2 = nn.Linear(500, num_classes)
        _caffe_xavier_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        return self.ip2(self.relu1(self.ip1(torch.flatten(x, 1))))


class SmallCNN(nn.Module):
    """A stronger small CNN: two conv-BN-ReLU blocks per stage, dropout before the classifier."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(1, 32), *block(32, 32), nn.MaxPool2d(2),
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 256), nn.ReLU(inplace=True),
            nn.Dropout(0.25), nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def lenet(num_classes: int = 10) -> nn.Module:
    return LeNet(num_classes)


def cnn(num_classes: int = 10) -> nn.Module:
    return SmallCNN(num_classes)


# name -> factory taking the number of classes (each has its default)
SIZED_MODELS: dict[str, SizedFactory] = {
    "lenet": lenet, "cnn": cnn, "alexnet": alexnet, "caffenet": caffenet,
    "googlenet": googlenet, "resnet50": resnet50,
}
BUILTIN_MODELS: dict[str, ModelFactory] = dict(SIZED_MODELS)


def builtin_factory(ref: str) -> ModelFactory | None:
    """The factory of a built-in reference ``NAME`` or ``NAME#N`` (None: not a built-in)."""
    name, sized, classes = ref.partition("#")
    make = SIZED_MODELS.get(name)
    if make is None or not sized:
        return make
    if not classes.isdigit() or int(classes) < 1:
        raise ConfigError(f"model {ref!r}: {classes!r} is not a number of classes; write "
                          f"{name}#N with N >= 1, e.g. {name}#10")
    return functools.partial(make, int(classes))
