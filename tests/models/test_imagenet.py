"""The built-in ImageNet-class networks: BVLC layouts (checked against the nets
``sparknet.caffe`` builds from the BVLC definitions), torchvision's ResNet-50 layout, the
``NAME#N`` class count, seeded weights, and small inputs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from sparknet.errors import ConfigError
from sparknet.models.registry import resolve_model
from sparknet.models.zoo import builtin_factory

BVLC = Path(__file__).resolve().parents[2].parent / "shared" / "caffe" / "models" / "bvlc_prototxt"
DEPLOY = {"alexnet": ("models__bvlc_alexnet__deploy.prototxt", 227),
          "caffenet": ("models__bvlc_reference_caffenet__deploy.prototxt", 227),
          "googlenet": ("models__bvlc_googlenet__deploy.prototxt", 224)}


def _shapes(module: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in module.parameters()]


@pytest.mark.parametrize("name", sorted(DEPLOY))
def test_bvlc_layouts_match_the_nets_built_from_their_definitions(name: str) -> None:
    """Same parameter shapes in the same order; with the same weights, the same logits."""
    from sparknet.caffe import CaffeLogits, load_net

    prototxt, size = DEPLOY[name]
    if not (BVLC / prototxt).is_file():
        pytest.skip(f"the BVLC definitions are not at {BVLC} (../shared/caffe)")
    torch.manual_seed(0)
    ours = builtin_factory(name)().eval()  # type: ignore[misc]
    caffe = CaffeLogits(load_net(BVLC / prototxt)).eval()
    assert _shapes(ours) == _shapes(caffe)
    with torch.no_grad():
        for mine, theirs in zip(ours.parameters(), caffe.parameters(), strict=True):
            theirs.copy_(mine)
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(ours(x), caffe(x), rtol=1e-4, atol=1e-5)


# torchvision's resnet50(): parameters, and the first and last named shapes of its state dict
RESNET50_PARAMETERS = 25_557_032
RESNET50_NAMED = {"conv1.weight": (64, 3, 7, 7), "bn1.running_mean": (64,),
                  "layer1.0.downsample.0.weight": (256, 64, 1, 1),
                  "layer2.0.conv2.weight": (128, 128, 3, 3),
                  "layer4.2.bn3.num_batches_tracked": (), "fc.weight": (1000, 2048),
                  "fc.bias": (1000,)}


def test_resnet50_has_torchvisions_layout() -> None:
    torch.manual_seed(0)
    ours = builtin_factory("resnet50")()  # type: ignore[misc]
    assert sum(p.numel() for p in ours.parameters()) == RESNET50_PARAMETERS
    state = ours.state_dict()
    assert len(state) == 320 and len(list(ours.parameters())) == 161
    for key, shape in RESNET50_NAMED.items():
        assert tuple(state[key].shape) == shape, key
    try:
        from torchvision.models import resnet50
    except ImportError:
        return
    torch.manual_seed(0)
    theirs = resnet50().state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == \
        [(k, tuple(v.shape)) for k, v in theirs.items()]
    for key, value in theirs.items():  # same seed, same construction order: same weights
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize(("ref", "size"), [("alexnet#3", 64), ("caffenet#3", 64),
                                           ("googlenet#3", 32), ("resnet50#3", 32),
                                           ("lenet#3", 28)])
def test_a_class_count_sizes_the_classifier_and_small_images_run(ref: str, size: int) -> None:
    kind = resolve_model(ref)
    assert kind.key == ref
    channels = 1 if ref.startswith("lenet") else 3
    torch.manual_seed(3)
    first = kind.build()
    torch.manual_seed(3)
    second = kind.build()
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the seed picks the weights
    first.train()
    out = first(torch.rand(2, channels, size, size))
    assert out.shape == (2, 3) and bool(torch.isfinite(out).all())
    out.sum().backward()


@pytest.mark.parametrize("ref", ["alexnet#0", "alexnet#x", "resnet50#"])
def test_a_bad_class_count_is_one_line(ref: str) -> None:
    with pytest.raises(ConfigError, match=r"is not a number of classes; write \w+#N"):
        resolve_model(ref)


def test_imagenet_defaults_have_1000_classes() -> None:
    for name in ("alexnet", "caffenet", "googlenet", "resnet50"):
        assert resolve_model(name).key == name
    net = builtin_factory("googlenet")()  # type: ignore[misc]
    assert isinstance(net, nn.Module) and net.classifier.out_features == 1000
    assert math.isclose(float(net.classifier.bias.detach().abs().sum()), 0.0)
