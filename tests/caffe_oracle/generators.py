"""Random valid Caffe layer configurations, one generator per layer type sparknet supports.

Each generator draws a configuration from a numpy Generator (so a seed reproduces it) and
returns a NetCase: a net of Input layers and the layer under test, its phase, its inputs and
whether a backward pass is compared. ``finish`` then adds random weights of the shapes
sparknet gives the layer and random gradients for the net's outputs. Inputs are either
normal floats or, in "ties" mode, small integers, so that max ties, zeros and thresholds are
hit on purpose.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from sparknet.caffe import build_net, parse_net_text
from sparknet.errors import SparknetError
from tests.caffe.oracle_cases import NetCase

Rng = np.random.Generator


def _dims(shape: tuple[int, ...]) -> str:
    return " ".join(f"dim: {d}" for d in shape)


def input_layer(top: str, shape: tuple[int, ...]) -> str:
    return (f'layer {{ name: "in_{top}" type: "Input" top: "{top}" '
            f"input_param {{ shape {{ {_dims(shape)} }} }} }}\n")


def layer(name: str, kind: str, bottoms: list[str], tops: list[str], body: str = "") -> str:
    links = " ".join([*(f'bottom: "{b}"' for b in bottoms), *(f'top: "{t}"' for t in tops)])
    return f'layer {{ name: "{name}" type: "{kind}" {links} {body} }}\n'


def values(rng: Rng, shape: tuple[int, ...], ties: bool) -> np.ndarray:
    if ties:
        return rng.integers(-2, 3, size=shape).astype(np.float32)
    return rng.normal(size=shape).astype(np.float32)


def _shape(rng: Rng, ndim: int, low: int = 1, high: int = 5) -> tuple[int, ...]:
    return tuple(int(d) for d in rng.integers(low, high + 1, size=ndim))


def _pick(rng: Rng, options: list) -> object:  # type: ignore[type-arg]
    return options[int(rng.integers(len(options)))]


def _float(rng: Rng, low: float, high: float) -> float:
    return float(np.float32(rng.uniform(low, high)))


def _spatial(rng: Rng, name: str, h: int, w: int, *, repeated: bool) -> str:
    """One of the spellings Caffe accepts for a 2-D kernel/pad/stride value."""
    forms = ["hw"] + (["one", "two"] if repeated else ["one"])
    if h != w:
        forms = [f for f in forms if f != "one"]
    form = _pick(rng, forms)
    field = "kernel_size" if name == "kernel" else name
    if form == "one":
        return f"{field}: {h}"
    if form == "two":
        return f"{field}: {h} {field}: {w}"
    return f"{name}_h: {h} {name}_w: {w}"


def _single(kind: str, rng: Rng, shapes: list[tuple[int, ...]], body: str, *,
            ties: bool = False, phase: str = "", backward: bool = True,
            tops: int = 1, in_place: bool = False, note: str = "") -> NetCase:
    names = [f"x{i}" for i in range(len(shapes))]
    phase = phase or str(_pick(rng, ["TRAIN", "TEST"]))
    text = "force_backward: true\n" if backward else ""
    text += "".join(input_layer(n, s) for n, s in zip(names, shapes, strict=True))
    top_names = names[:1] if in_place else [f"y{i}" for i in range(tops)]
    text += layer("target", kind, names, top_names, body)
    arrays = {f"input:{n}": values(rng, s, ties) for n, s in zip(names, shapes, strict=True)}
    note = note or f"{body} shapes={shapes} ties={ties} {phase}" + (
        " in_place" if in_place else "")
    return NetCase(name="", layer_type=kind, prototxt=text, phase=phase, backward=backward,
                   arrays=arrays, note=note)


# -- layers with parameters ------------------------------------------------------------------

def convolution(rng: Rng, kind: str = "Convolution") -> NetCase:
    while True:
        group = int(_pick(rng, [1, 1, 2, 3]))
        channels, n_out = group * int(rng.integers(1, 3)), group * int(rng.integers(1, 3))
        kh, kw = (int(k) for k in rng.integers(1, 5, size=2))
        ph, pw = (int(p) for p in rng.integers(0, 3, size=2))
        sh, sw = (int(s) for s in rng.integers(1, 4, size=2))
        dh, dw = (int(d) for d in rng.integers(1, 3, size=2))
        h, w = (int(s) for s in rng.integers(1, 8, size=2))
        if kind == "Convolution":
            ok = all(s + 2 * p >= d * (k - 1) + 1 for s, p, d, k in
                     ((h, ph, dh, kh), (w, pw, dw, kw)))
        else:
            ok = all(st * (s - 1) + d * (k - 1) + 1 - 2 * p >= 1 for s, p, d, k, st in
                     ((h, ph, dh, kh, sh), (w, pw, dw, kw, sw)))
        if ok:
            break
    body = [f"num_output: {n_out}", _spatial(rng, "kernel", kh, kw, repeated=True)]
    if ph or pw or rng.random() < 0.3:
        body.append(_spatial(rng, "pad", ph, pw, repeated=True))
    if sh != 1 or sw != 1 or rng.random() < 0.3:
        body.append(_spatial(rng, "stride", sh, sw, repeated=True))
    if dh != 1 or dw != 1:
        body.append(f"dilation: {dh}" if dh == dw and rng.random() < 0.5
                    else f"dilation: {dh} dilation: {dw}")
    if group > 1:
        body.append(f"group: {group}")
    if rng.random() < 0.3:
        body.append("bias_term: false")
    n = int(rng.integers(1, 3))
    return _single(kind, rng, [(n, channels, h, w)],
                   f"convolution_param {{ {' '.join(body)} }}", ties=rng.random() < 0.2)


def deconvolution(rng: Rng) -> NetCase:
    return convolution(rng, "Deconvolution")


def pooling(rng: Rng) -> NetCase:
    # Caffe's CPU STOCHASTIC pooling is NOT_IMPLEMENTED and sparknet refuses it: both must.
    method = str(_pick(rng, ["MAX", "AVE", "MAX", "AVE", "STOCHASTIC"]))
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    body = [f"pool: {method}"]
    if rng.random() < 0.15:
        body.append("global_pooling: true")
        h, w = (int(s) for s in rng.integers(1, 7, size=2))
    else:
        while True:
            kh, kw = (int(k) for k in rng.integers(1, 5, size=2))
            ph, pw = (int(rng.integers(0, k)) if rng.random() < 0.6 else 0 for k in (kh, kw))
            sh, sw = (int(s) for s in rng.integers(1, 4, size=2))
            h = int(rng.integers(max(1, kh - 2 * ph), 9))
            w = int(rng.integers(max(1, kw - 2 * pw), 9))
            ceil = rng.random() < 0.7
            # Unpadded ceil rounding can put a window outside the input, where Caffe reads
            # and writes out of bounds (sparknet refuses it: tests/caffe/test_layers_edges.py).
            if ph or pw or not ceil or all((-(-(s - k) // st)) * st < s for s, k, st in
                                           ((h, kh, sh), (w, kw, sw))):
                break
        body.append(_spatial(rng, "kernel", kh, kw, repeated=False))
        if ph or pw or rng.random() < 0.2:
            body.append(_spatial(rng, "pad", ph, pw, repeated=False))
        if sh != 1 or sw != 1 or rng.random() < 0.2:
            body.append(_spatial(rng, "stride", sh, sw, repeated=False))
        if not ceil:
            body.append("round_mode: FLOOR")
        elif rng.random() < 0.3:
            body.append("round_mode: CEIL")
    return _single("Pooling", rng, [(n, c, h, w)], f"pooling_param {{ {' '.join(body)} }}",
                   ties=method == "MAX" and rng.random() < 0.5)


def inner_product(rng: Rng) -> NetCase:
    shape = _shape(rng, int(rng.integers(2, 5)))
    axis = int(rng.integers(0, len(shape)))
    if rng.random() < 0.3:
        axis -= len(shape)
    body = [f"num_output: {int(rng.integers(1, 5))}"]
    if axis != 1 or rng.random() < 0.2:
        body.append(f"axis: {axis}")
    if rng.random() < 0.3:
        body.append("transpose: true")
    if rng.random() < 0.3:
        body.append("bias_term: false")
    return _single("InnerProduct", rng, [shape],
                   f"inner_product_param {{ {' '.join(body)} }}")


def lrn(rng: Rng) -> NetCase:
    region = str(_pick(rng, ["ACROSS_CHANNELS", "WITHIN_CHANNEL"]))
    body = [f"norm_region: {region}", f"local_size: {_pick(rng, [1, 3, 5, 7])}",
            f"alpha: {_float(rng, 1e-4, 2.0)}", f"beta: {_float(rng, 0.1, 1.5)}"]
    if rng.random() < 0.7:
        body.append(f"k: {_float(rng, 0.5, 3.0)}")
    return _single("LRN", rng, [(int(rng.integers(1, 3)), *_shape(rng, 3, 1, 7))],
                   f"lrn_param {{ {' '.join(body)} }}")  # in place: refused (see NOT_IN_PLACE)


def batch_norm(rng: Rng) -> NetCase:
    ndim = int(_pick(rng, [2, 3, 4, 4]))
    shape = _shape(rng, ndim, 1, 4)
    body = []
    if rng.random() < 0.5:
        body.append(f"use_global_stats: {_pick(rng, ['true', 'false'])}")
    if rng.random() < 0.5:
        body.append(f"moving_average_fraction: {_float(rng, 0.5, 0.999)}")
    if rng.random() < 0.5:
        body.append(f"eps: {_float(rng, 1e-5, 1e-2)}")
    phase = str(_pick(rng, ["TRAIN", "TEST"]))
    return _single("BatchNorm", rng, [shape], f"batch_norm_param {{ {' '.join(body)} }}",
                   phase=phase, in_place=rng.random() < 0.3)


def scale(rng: Rng) -> NetCase:
    shape = _shape(rng, int(rng.integers(1, 5)))
    axis = int(rng.integers(0, len(shape)))
    two_bottoms = rng.random() < 0.4
    body = []
    if axis != 1 or rng.random() < 0.3:
        body.append(f"axis: {axis - len(shape) if rng.random() < 0.3 else axis}")
    shapes = [shape]
    if two_bottoms:
        shapes.append(shape[axis: axis + int(rng.integers(1, len(shape) - axis + 1))])
    else:
        num_axes = int(_pick(rng, [-1, 0, 1, 1, 2]))
        num_axes = min(num_axes, len(shape) - axis)
        if num_axes != 1:
            body.append(f"num_axes: {num_axes}")
    if rng.random() < 0.5:
        body.append("bias_term: true")
    return _single("Scale", rng, shapes, f"scale_param {{ {' '.join(body)} }}",
                   in_place=len(shapes) == 1 and rng.random() < 0.3)


def prelu(rng: Rng) -> NetCase:
    body = "prelu_param { channel_shared: true }" if rng.random() < 0.3 else ""
    return _single("PReLU", rng, [_shape(rng, int(rng.integers(2, 5)))], body,
                   ties=rng.random() < 0.5, in_place=rng.random() < 0.3)


# -- parameter-free layers -------------------------------------------------------------------

def _elementwise(kind: str, body: Callable[[Rng], str], *, backward: bool = True,
                 positive: bool = False) -> Callable[[Rng], NetCase]:
    def generate(rng: Rng) -> NetCase:
        in_place = rng.random() < 0.3
        case = _single(kind, rng, [_shape(rng, int(rng.integers(1, 5)))], body(rng),
                       ties=rng.random() < 0.4 and not positive, backward=backward,
                       in_place=in_place)
        if positive:  # a fractional power of a negative number is NaN in both: not a test
            case.arrays = {k: np.abs(v) + np.float32(0.5) for k, v in case.arrays.items()}
        return case
    return generate


def _relu_body(rng: Rng) -> str:
    if rng.random() < 0.4:
        return ""
    return f"relu_param {{ negative_slope: {_float(rng, -0.5, 0.5)} }}"


def _power_body(rng: Rng) -> str:
    return (f"power_param {{ power: {_pick(rng, [0, 1, 2, 3])} scale: {_float(rng, -2, 2)} "
            f"shift: {_float(rng, -1, 1)} }}")


def _fractional_power_body(rng: Rng) -> str:
    return (f"power_param {{ power: {_pick(rng, [0.5, 1.5, -1, -0.5])} "
            f"scale: {_float(rng, 0.5, 2)} shift: {_float(rng, 0, 1)} }}")


def _base_scale_shift(message: str, rng: Rng, scale: tuple[float, float],
                      shift: tuple[float, float]) -> str:
    """Exp's and Log's parameters: an optional base (else e), a scale and a shift."""
    base = _pick(rng, [None, 2.0, 0.5, 10.0])
    fields = "" if base is None else f"base: {base} "
    return (f"{message} {{ {fields}scale: {_float(rng, *scale)} "
            f"shift: {_float(rng, *shift)} }}")


def _exp_body(rng: Rng) -> str:
    return _base_scale_shift("exp_param", rng, (-1, 1), (-1, 1))


def _elu_body(rng: Rng) -> str:
    return "" if rng.random() < 0.3 else f"elu_param {{ alpha: {_float(rng, 0, 2)} }}"


def _threshold_body(rng: Rng) -> str:
    return f"threshold_param {{ threshold: {_pick(rng, [0.0, 1.0, _float(rng, -1, 1)])} }}"


def power(rng: Rng) -> NetCase:
    if rng.random() < 0.5:
        return _elementwise("Power", _fractional_power_body, positive=True)(rng)
    return _elementwise("Power", _power_body)(rng)


def dropout(rng: Rng) -> NetCase:
    # TRAIN-phase masks come from each framework's own random numbers: in TRAIN only ratio 0
    # (which keeps every unit) is compared.
    phase = str(_pick(rng, ["TRAIN", "TEST"]))
    ratio = 0.0 if phase == "TRAIN" else _float(rng, 0, 0.9)
    body = "" if phase == "TEST" and rng.random() < 0.3 else \
        f"dropout_param {{ dropout_ratio: {ratio} }}"
    return _single("Dropout", rng, [_shape(rng, int(rng.integers(1, 5)))], body, phase=phase,
                   in_place=rng.random() < 0.5)


def split(rng: Rng) -> NetCase:
    return _single("Split", rng, [_shape(rng, int(rng.integers(1, 5)))], "",
                   tops=int(rng.integers(1, 4)))


def silence(rng: Rng) -> NetCase:
    shapes = [_shape(rng, int(rng.integers(1, 4))) for _ in range(int(rng.integers(1, 3)))]
    return _single("Silence", rng, shapes, "", tops=0)


def eltwise(rng: Rng) -> NetCase:
    shape = _shape(rng, int(rng.integers(1, 5)))
    count = int(rng.integers(2, 5))
    op = str(_pick(rng, ["PROD", "SUM", "MAX"]))
    body = [f"operation: {op}"]
    if op == "SUM" and rng.random() < 0.6:
        body += [f"coeff: {_float(rng, -2, 2)}" for _ in range(count)]
    unstable = op == "PROD" and rng.random() < 0.3
    if unstable:
        body.append("stable_prod_grad: false")
    case = _single("Eltwise", rng, [shape] * count, f"eltwise_param {{ {' '.join(body)} }}",
                   ties=rng.random() < 0.5 and not unstable)
    if unstable:  # Caffe's top/bottom gradient is 0/0 at a zero input: keep inputs non-zero
        case.arrays = {k: np.where(np.abs(v) < 0.1, np.float32(0.5), v)
                       for k, v in case.arrays.items()}
    return case


def concat(rng: Rng) -> NetCase:
    shape = list(_shape(rng, int(rng.integers(1, 5))))
    axis = int(rng.integers(0, len(shape)))
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        shape[axis] = int(rng.integers(1, 4))
        shapes.append(tuple(shape))
    if rng.random() < 0.2 and axis >= 0:
        body = f"concat_param {{ concat_dim: {axis} }}"
    elif axis != 1 or rng.random() < 0.3:
        body = f"concat_param {{ axis: {axis - len(shape) if rng.random() < 0.3 else axis} }}"
    else:
        body = ""
    return _single("Concat", rng, shapes, body)


def flatten(rng: Rng) -> NetCase:
    shape = _shape(rng, int(rng.integers(1, 6)), 1, 4)
    start = int(rng.integers(0, len(shape)))
    end = int(rng.integers(start, len(shape)))
    fields = []
    if start != 1 or rng.random() < 0.3:
        fields.append(f"axis: {start}")
    if end != len(shape) - 1 or rng.random() < 0.5:
        fields.append(f"end_axis: {end - len(shape) if rng.random() < 0.5 else end}")
    body = f"flatten_param {{ {' '.join(fields)} }}" if fields else ""
    return _single("Flatten", rng, [shape], body, in_place=rng.random() < 0.2)


def _factor(rng: Rng, total: int) -> list[int]:
    dims = []
    for _ in range(int(rng.integers(0, 3))):
        divisors = [d for d in range(1, total + 1) if total % d == 0]
        d = int(_pick(rng, divisors))
        dims.append(d)
        total //= d
    return [*dims, total]


def reshape(rng: Rng) -> NetCase:
    shape = _shape(rng, int(rng.integers(1, 5)), 1, 4)
    axis = int(rng.integers(0, len(shape) + 1))
    num_axes = -1 if rng.random() < 0.4 else int(rng.integers(0, len(shape) - axis + 1))
    end = len(shape) if num_axes == -1 else axis + num_axes
    dims = _factor(rng, math.prod(shape[axis:end]))
    if dims == [1] and end == axis:
        dims = [] if rng.random() < 0.5 else [1]
    spelled = [0 if i < end - axis and d == shape[axis + i] and rng.random() < 0.4 else d
               for i, d in enumerate(dims)]
    free = [i for i, d in enumerate(spelled) if d != 0]
    if free and rng.random() < 0.5:
        spelled[int(_pick(rng, free))] = -1
    fields = [f"shape {{ {_dims(tuple(spelled))} }}"]
    if axis or rng.random() < 0.2:
        fields.append(f"axis: {axis - len(shape) - 1 if rng.random() < 0.3 else axis}")
    if num_axes != -1:
        fields.append(f"num_axes: {num_axes}")
    return _single("Reshape", rng, [shape], f"reshape_param {{ {' '.join(fields)} }}",
                   in_place=rng.random() < 0.2)


def slice_(rng: Rng) -> NetCase:
    shape = list(_shape(rng, int(rng.integers(1, 5)), 1, 4))
    axis = int(rng.integers(0, len(shape)))
    shape[axis] = int(rng.integers(2, 7))
    size = shape[axis]
    if rng.random() < 0.5:
        points = sorted(int(p) for p in rng.choice(np.arange(1, size), replace=False,
                                                   size=int(rng.integers(1, min(3, size - 1) + 1))))
        tops, fields = len(points) + 1, [f"slice_point: {p}" for p in points]
    else:
        tops = int(_pick(rng, [d for d in range(1, size + 1) if size % d == 0]))
        fields = []
    if rng.random() < 0.2:
        fields.append(f"slice_dim: {axis}")
    elif axis != 1 or rng.random() < 0.3:
        fields.append(f"axis: {axis - len(shape) if rng.random() < 0.3 else axis}")
    body = f"slice_param {{ {' '.join(fields)} }}" if fields else ""
    return _single("Slice", rng, [tuple(shape)], body, tops=tops)


def softmax(rng: Rng) -> NetCase:
    shape = _shape(rng, int(rng.integers(1, 5)))
    axis = int(rng.integers(0, len(shape)))
    if axis == 1 and rng.random() < 0.5:
        body = ""
    else:
        body = f"softmax_param {{ axis: {axis - len(shape) if rng.random() < 0.3 else axis} }}"
    if len(shape) == 1 and not body:
        body = "softmax_param { axis: 0 }"
    return _single("Softmax", rng, [shape], body, ties=rng.random() < 0.2,
                   in_place=rng.random() < 0.2)


def _scores_and_labels(rng: Rng, *, ignore: int | None
                       ) -> tuple[tuple[int, ...], int, np.ndarray]:
    shape = _shape(rng, int(rng.integers(2, 5)), 1, 4)
    axis = int(rng.integers(1, len(shape))) if rng.random() < 0.3 else 1
    classes = shape[axis]
    label_shape = shape[:axis] + shape[axis + 1:]
    labels = rng.integers(0, classes, size=label_shape).astype(np.float32)
    if ignore is not None:
        mask = rng.random(size=label_shape) < 0.3
        labels[mask] = ignore
    return shape, axis, labels


def softmax_with_loss(rng: Rng) -> NetCase:
    ignore = int(_pick(rng, [0, 1, -1, 255])) if rng.random() < 0.4 else None
    shape, axis, labels = _scores_and_labels(rng, ignore=ignore)
    loss = []
    if ignore is not None:
        loss.append(f"ignore_label: {ignore}")
    choice = _pick(rng, [None, "FULL", "VALID", "BATCH_SIZE", "NONE", "normalize"])
    if choice == "normalize":
        loss.append(f"normalize: {_pick(rng, ['true', 'false'])}")
    elif choice is not None:
        loss.append(f"normalization: {choice}")
    body = f"loss_param {{ {' '.join(loss)} }}" if loss else ""
    if axis != 1:
        body += f" softmax_param {{ axis: {axis} }}"
    if rng.random() < 0.3:
        body += f" loss_weight: {_float(rng, 0.1, 3)}"
    case = _single("SoftmaxWithLoss", rng, [shape, labels.shape], body)
    case.arrays["input:x1"] = labels
    return case


def euclidean_loss(rng: Rng) -> NetCase:
    shape = _shape(rng, int(rng.integers(1, 5)))
    body = f"loss_weight: {_float(rng, 0.1, 3)}" if rng.random() < 0.3 else ""
    return _single("EuclideanLoss", rng, [shape, shape], body)


def accuracy(rng: Rng) -> NetCase:
    ignore = int(_pick(rng, [0, 1, -1])) if rng.random() < 0.3 else None
    shape, axis, labels = _scores_and_labels(rng, ignore=ignore)
    fields = [f"top_k: {int(rng.integers(1, shape[axis] + 1))}"]
    if axis != 1:
        fields.append(f"axis: {axis}")
    if ignore is not None:
        fields.append(f"ignore_label: {ignore}")
    case = _single("Accuracy", rng, [shape, labels.shape],
                   f"accuracy_param {{ {' '.join(fields)} }}", ties=rng.random() < 0.5,
                   backward=False)  # Caffe's Accuracy has no backward pass
    case.arrays["input:x1"] = labels
    return case


def small_net(rng: Rng) -> NetCase:
    """Several layers: in-place layers, a blob read twice (Caffe inserts a Split), a loss
    weight on a non-loss top, propagate_down, a layer kept by a phase rule; TRAIN or TEST."""
    n, c, size = int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(5, 9))
    phase = str(_pick(rng, ["TRAIN", "TEST"]))
    force = rng.random() < 0.5  # without it Caffe honours propagate_down (and skips inputs)
    text = ("force_backward: true\n" if force else "") + input_layer("data", (n, c, size, size))
    text += input_layer("label", (n,))
    text += layer("conv", "Convolution", ["data"], ["conv"],
                  "convolution_param { num_output: 3 kernel_size: 3 pad: 1 }")
    text += layer("relu", "ReLU", ["conv"], ["conv"])
    text += layer("pool", "Pooling", ["conv"], ["pool"],
                  f"pooling_param {{ pool: {_pick(rng, ['MAX', 'AVE'])} kernel_size: 3 "
                  "stride: 2 }")
    branch = str(_pick(rng, ["LRN", "BatchNorm", "Scale", "TanH"]))
    weight = _pick(rng, ["", f"loss_weight: {_float(rng, 0.1, 2)}"])
    text += layer("branch", branch, ["pool"], ["branch"], str(weight))
    down = _pick(rng, ["", "propagate_down: true propagate_down: false",
                       "propagate_down: false propagate_down: true"])
    text += layer("sum", "Eltwise", ["pool", "branch"], ["sum"], str(down))
    text += layer("ip", "InnerProduct", ["sum"], ["ip"], "inner_product_param { num_output: 4 }")
    rule = _pick(rng, ["include { phase: TRAIN }", "include { phase: TEST }",
                       "exclude { phase: TRAIN }"])
    text += layer("squash", "TanH", ["ip"], ["ip"], str(rule))
    # Dropout in TRAIN draws random masks in each framework: ratio 0 there.
    ratio = "dropout_param { dropout_ratio: 0 }" if phase == "TRAIN" else ""
    text += layer("drop", "Dropout", ["ip"], ["ip"], ratio)
    text += layer("loss", "SoftmaxWithLoss", ["ip", "label"], ["loss"])
    arrays = {"input:data": values(rng, (n, c, size, size), False),
              "input:label": rng.integers(0, 4, size=(n,)).astype(np.float32)}
    return NetCase(name="", layer_type="net", prototxt=text, phase=phase, arrays=arrays,
                   note=f"branch={branch} phase={phase} {weight} {down} {rule} "
                        f"force_backward={force}")


# -- Caffe 1.0 layers added for the whole registry -------------------------------------------

def _behind_scale(kind: str, rng: Rng, shapes: list[tuple[int, ...]], body: str,
                  learned: list[int], *, tops: int = 1, arrays: dict[str, np.ndarray],
                  note: str = "") -> NetCase:
    """The layer under test with the bottoms in ``learned`` passed through a scalar Scale
    first: its gradient then reaches a parameter, so the backward pass is compared without
    ``force_backward`` (which Caffe refuses for index and label bottoms of these layers).
    Without it Caffe back-propagates only from losses: a layer that is no loss gets a loss
    weight on each top."""
    names = [f"x{i}" for i in range(len(shapes))]
    text = "".join(input_layer(n, s) for n, s in zip(names, shapes, strict=True))
    bottoms = []
    for i, name in enumerate(names):
        if i in learned:
            text += layer(f"scale{i}", "Scale", [name], [f"s{i}"],
                          "scale_param { axis: 0 num_axes: 0 }")
            bottoms.append(f"s{i}")
        else:
            bottoms.append(name)
    if not kind.endswith("Loss"):
        body += "".join(f" loss_weight: {_float(rng, 0.5, 2)}" for _ in range(tops))
    elif tops == 2:
        body += " loss_weight: 1 loss_weight: 0"
    text += layer("target", kind, bottoms, [f"y{i}" for i in range(tops)], body)
    phase = str(_pick(rng, ["TRAIN", "TEST"]))
    return NetCase(name="", layer_type=kind, prototxt=text, phase=phase, backward=True,
                   arrays=arrays, note=note or f"{body} shapes={shapes}")


def _log_body(rng: Rng) -> str:
    return _base_scale_shift("log_param", rng, (0.5, 2), (0, 1))  # positive inputs stay so


def _swish_body(rng: Rng) -> str:
    return "" if rng.random() < 0.3 else f"swish_param {{ beta: {_float(rng, 0.1, 3)} }}"


def _clip_body(rng: Rng) -> str:
    low = float(_pick(rng, [-1.0, 0.0, _float(rng, -1.5, 0.5)]))
    return f"clip_param {{ min: {low} max: {float(_pick(rng, [1.0, low + _float(rng, 0, 2)]))} }}"


def bias(rng: Rng) -> NetCase:
    shape = _shape(rng, int(rng.integers(1, 5)))
    axis = int(rng.integers(0, len(shape)))
    body = []
    if axis != 1 or rng.random() < 0.3:
        body.append(f"axis: {axis - len(shape) if rng.random() < 0.3 else axis}")
    shapes = [shape]
    if rng.random() < 0.4:
        shapes.append(shape[axis: axis + int(rng.integers(1, len(shape) - axis + 1))])
    else:
        num_axes = min(int(_pick(rng, [-1, 0, 1, 1, 2])), len(shape) - axis)
        if num_axes != 1:
            body.append(f"num_axes: {num_axes}")
    return _single("Bias", rng, shapes, f"bias_param {{ {' '.join(body)} }}",
                   in_place=len(shapes) == 1 and rng.random() < 0.3)


def crop(rng: Rng) -> NetCase:
    ndim = int(rng.integers(2, 5))
    big = _shape(rng, ndim, 2, 6)
    axis = int(rng.integers(0, ndim))
    small = tuple(int(rng.integers(1, d + 1)) if i >= axis else d for i, d in enumerate(big))
    room = [big[i] - small[i] for i in range(axis, ndim)]
    body = [f"axis: {axis}"]
    if rng.random() < 0.5:
        body.append(f"offset: {min(room)}")
    else:
        body += [f"offset: {int(rng.integers(0, r + 1))}" for r in room]
    return _single("Crop", rng, [big, small], f"crop_param {{ {' '.join(body)} }}")


def tile(rng: Rng) -> NetCase:
    shape = _shape(rng, int(rng.integers(1, 5)), 1, 4)
    axis = int(rng.integers(0, len(shape)))
    return _single("Tile", rng, [shape],
                   f"tile_param {{ axis: {axis} tiles: {int(rng.integers(1, 4))} }}")


def reduction(rng: Rng) -> NetCase:
    shape = _shape(rng, int(rng.integers(1, 5)))
    axis = int(rng.integers(0, len(shape)))
    op = _pick(rng, ["SUM", "ASUM", "SUMSQ", "MEAN"])
    body = f"operation: {op} axis: {axis} coeff: {_pick(rng, [1.0, _float(rng, -2, 2)])}"
    return _single("Reduction", rng, [shape], f"reduction_param {{ {body} }}",
                   ties=rng.random() < 0.3)


def argmax(rng: Rng) -> NetCase:
    # Caffe's ArgMax has no backward pass: forward only, ties on purpose.
    shape = _shape(rng, int(rng.integers(2, 5)))
    body = []
    if rng.random() < 0.5:
        axis = int(rng.integers(0, len(shape)))
        body.append(f"axis: {axis}")
        size = shape[axis]
    else:
        size = math.prod(shape[1:])
    body.append(f"top_k: {int(rng.integers(1, size + 1))}")
    if rng.random() < 0.5:
        body.append("out_max_val: true")
    return _single("ArgMax", rng, [shape], f"argmax_param {{ {' '.join(body)} }}",
                   ties=rng.random() < 0.5, backward=False)


def mvn(rng: Rng) -> NetCase:
    shape = (int(rng.integers(1, 3)), *_shape(rng, 3, 1, 4))
    body = []
    if rng.random() < 0.5:
        body.append("across_channels: true")
    if rng.random() < 0.3:
        body.append("normalize_variance: false")
    if rng.random() < 0.3:
        body.append(f"eps: {_float(rng, 1e-6, 1e-2)}")
    return _single("MVN", rng, [shape], f"mvn_param {{ {' '.join(body)} }}",
                   ties=rng.random() < 0.3)


def embed(rng: Rng) -> NetCase:
    dim = int(rng.integers(1, 6))
    shape = _shape(rng, int(rng.integers(1, 3)))
    body = f"num_output: {int(rng.integers(1, 4))} input_dim: {dim}"
    if rng.random() < 0.3:
        body += " bias_term: false"
    # Parameter gradients only: Caffe cannot back-propagate to the indices (so no
    # force_backward), and without it only from a loss (a loss weight on the top).
    case = _single("Embed", rng, [shape], f"embed_param {{ {body} }} "
                   f"loss_weight: {_float(rng, 0.5, 2)}", backward=False)
    case.arrays["input:x0"] = rng.integers(0, dim, shape).astype(np.float32)
    case.backward = True
    return case


def im2col(rng: Rng) -> NetCase:
    while True:
        kh, kw = (int(k) for k in rng.integers(1, 4, size=2))
        ph, pw = (int(p) for p in rng.integers(0, 2, size=2))
        sh, sw = (int(s) for s in rng.integers(1, 3, size=2))
        h, w = (int(s) for s in rng.integers(1, 7, size=2))
        if h + 2 * ph >= kh and w + 2 * pw >= kw:
            break
    body = [_spatial(rng, "kernel", kh, kw, repeated=True),
            _spatial(rng, "pad", ph, pw, repeated=True),
            _spatial(rng, "stride", sh, sw, repeated=True)]
    return _single("Im2col", rng, [(int(rng.integers(1, 3)), int(rng.integers(1, 4)), h, w)],
                   f"convolution_param {{ {' '.join(body)} }}")


def parameter(rng: Rng) -> NetCase:
    shape = _shape(rng, int(rng.integers(1, 4)))
    return _single("Parameter", rng, [], f"parameter_param {{ shape {{ {_dims(shape)} }} }}")


def batch_reindex(rng: Rng) -> NetCase:
    shape = _shape(rng, int(rng.integers(1, 4)))
    picks = int(rng.integers(1, 2 * shape[0] + 1))
    index = rng.integers(0, shape[0], picks).astype(np.float32)  # repeats: gradients add
    return _behind_scale("BatchReindex", rng, [shape, (picks,)], "", [0], arrays={
        "input:x0": values(rng, shape, False), "input:x1": index})


def filter_(rng: Rng) -> NetCase:
    n = int(rng.integers(1, 6))
    shapes = [(n, *_shape(rng, int(rng.integers(0, 3)))) for _ in range(int(rng.integers(1, 3)))]
    selector = rng.integers(0, 2, n).astype(np.float32)
    selector[int(rng.integers(n))] = 1  # Caffe needs at least one selected row
    arrays = {f"input:x{i}": values(rng, s, False) for i, s in enumerate(shapes)}
    arrays[f"input:x{len(shapes)}"] = selector
    return _behind_scale("Filter", rng, [*shapes, (n,)], "", list(range(len(shapes))),
                         tops=len(shapes), arrays=arrays)


def spp(rng: Rng) -> NetCase:
    method = str(_pick(rng, ["MAX", "AVE"]))
    height = int(rng.integers(1, 3))
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 3)),
             *(int(s) for s in rng.integers(2 ** (height - 1) + 1, 9, size=2)))
    return _single("SPP", rng, [shape], f"spp_param {{ pyramid_height: {height} "
                   f"pool: {method} }}", ties=method == "MAX" and rng.random() < 0.5)


def sigmoid_cross_entropy_loss(rng: Rng) -> NetCase:
    shape = _shape(rng, int(rng.integers(1, 4)))
    targets = rng.integers(0, 2, shape).astype(np.float32)
    body = []
    if rng.random() < 0.3:
        body.append(f"ignore_label: {int(_pick(rng, [0, 1]))}")
    if rng.random() < 0.6:
        body.append(f"normalization: {_pick(rng, ['FULL', 'VALID', 'BATCH_SIZE', 'NONE'])}")
    elif rng.random() < 0.3:
        body.append(f"normalize: {_pick(rng, ['true', 'false'])}")
    case = _single("SigmoidCrossEntropyLoss", rng, [shape, shape],
                   f"loss_param {{ {' '.join(body)} }}" if body else "")
    case.arrays["input:x1"] = targets
    return case


def hinge_loss(rng: Rng) -> NetCase:
    n, classes = int(rng.integers(1, 5)), int(rng.integers(2, 5))
    body = "" if rng.random() < 0.3 else f"hinge_loss_param {{ norm: {_pick(rng, ['L1', 'L2'])} }}"
    case = _single("HingeLoss", rng, [(n, classes), (n,)], body, ties=rng.random() < 0.4)
    case.arrays["input:x1"] = rng.integers(0, classes, n).astype(np.float32)
    return case


def multinomial_logistic_loss(rng: Rng) -> NetCase:
    n, classes = int(rng.integers(1, 5)), int(rng.integers(2, 5))
    case = _single("MultinomialLogisticLoss", rng, [(n, classes), (n,)], "")
    case.arrays["input:x0"] = rng.uniform(0.05, 1.0, (n, classes)).astype(np.float32)
    case.arrays["input:x1"] = rng.integers(0, classes, n).astype(np.float32)
    return case


def infogain_loss(rng: Rng) -> NetCase:
    n, classes = int(rng.integers(1, 5)), int(rng.integers(2, 5))
    labels = rng.integers(0, classes, n).astype(np.float32)
    body = []
    if rng.random() < 0.3:
        body.append(f"loss_param {{ ignore_label: {int(labels[0])} }}")
    arrays = {"input:x0": values(rng, (n, classes), False), "input:x1": labels,
              "input:x2": np.abs(values(rng, (classes, classes), False))}
    return _behind_scale("InfogainLoss", rng, [(n, classes), (n,), (classes, classes)],
                         " ".join(body), [0], arrays=arrays,
                         tops=int(_pick(rng, [1, 1, 2])))


def contrastive_loss(rng: Rng) -> NetCase:
    n, dim = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    body = f"margin: {_float(rng, 0.2, 3)}"
    if rng.random() < 0.4:
        body += " legacy_version: true"
    case = _single("ContrastiveLoss", rng, [(n, dim, 1, 1), (n, dim, 1, 1), (n,)],
                   f"contrastive_loss_param {{ {body} }}")
    case.arrays["input:x2"] = rng.integers(0, 2, n).astype(np.float32)
    return case


def _sequence_starts(rng: Rng, steps: int, batch: int) -> np.ndarray:
    """cont (T, N): 0 where a sequence starts (always at t = 0, sometimes later), else 1."""
    cont = (rng.random((steps, batch)) > 0.25).astype(np.float32)
    cont[0] = 0
    return cont


def _recurrent(kind: str) -> Callable[[Rng], NetCase]:
    def generate(rng: Rng) -> NetCase:
        steps, batch, hidden = (int(v) for v in rng.integers(1, 4, size=3))
        shapes = [(steps, batch, *_shape(rng, int(rng.integers(1, 3)), 1, 3)),
                  (steps, batch)]
        static = rng.random() < 0.3
        if static:
            shapes.append((batch, int(rng.integers(1, 4))))
        expose = rng.random() < 0.3
        states = 2 if kind == "LSTM" else 1
        if expose:
            shapes += [(1, batch, hidden)] * states
        body = f"num_output: {hidden}" + (" expose_hidden: true" if expose else "")
        case = _single(kind, rng, shapes, f"recurrent_param {{ {body} }}",
                       tops=1 + (states if expose else 0))
        case.arrays["input:x1"] = _sequence_starts(rng, steps, batch)
        return case
    return generate


def lstm_unit(rng: Rng) -> NetCase:
    batch, hidden = (int(v) for v in rng.integers(1, 4, size=2))
    case = _single("LSTMUnit", rng, [(1, batch, hidden), (1, batch, 4 * hidden), (1, batch)],
                   "", tops=2)
    case.arrays["input:x2"] = (rng.random((1, batch)) > 0.4).astype(np.float32)
    return case


def hdf5_output(rng: Rng) -> NetCase:
    """Two bottoms of 1-4 axes (now and then 5, or two row counts: both refuse), straight
    from the inputs or the data through a learnable Scale that a loss also reads (so the
    layer's own lack of a gradient shows)."""
    rows = int(rng.integers(1, 4))
    shapes = [(rows if i == 0 or rng.random() > 0.08 else rows + 1,
               *_shape(rng, int(rng.integers(0, 4 if rng.random() > 0.08 else 5)), 1, 3))
              for i in range(2)]
    body = f'hdf5_output_param {{ file_name: "out_{int(rng.integers(1 << 30))}.h5" }}'
    if rng.random() < 0.5:
        case = _single("HDF5Output", rng, shapes, body, tops=0)
        case.note += " straight"
        return case
    case = _single("HDF5Output", rng, shapes, body, tops=0)
    case.prototxt = case.prototxt.replace(
        'bottom: "x0"', 'bottom: "s"').replace(
        'layer { name: "target"',
        layer("scale", "Scale", ["x0"], ["s"], "scale_param { axis: 0 num_axes: 1 "
              "bias_term: true }").rstrip("\n") + '\nlayer { name: "target"') + layer(
        "loss", "EuclideanLoss", ["s", "x0"], ["loss"])
    case.note += " through a Scale and a loss"
    return case


GENERATORS: dict[str, Callable[[Rng], NetCase]] = {
    "HDF5Output": hdf5_output,
    "LSTM": _recurrent("LSTM"), "RNN": _recurrent("RNN"), "LSTMUnit": lstm_unit,
    "Log": _elementwise("Log", _log_body, positive=True),
    "Swish": _elementwise("Swish", _swish_body), "Clip": _elementwise("Clip", _clip_body),
    "Bias": bias, "Crop": crop, "Tile": tile, "Reduction": reduction, "ArgMax": argmax,
    "MVN": mvn, "Embed": embed, "Im2col": im2col, "Parameter": parameter,
    "BatchReindex": batch_reindex, "Filter": filter_, "SPP": spp,
    "SigmoidCrossEntropyLoss": sigmoid_cross_entropy_loss, "HingeLoss": hinge_loss,
    "MultinomialLogisticLoss": multinomial_logistic_loss, "InfogainLoss": infogain_loss,
    "ContrastiveLoss": contrastive_loss,
    "Convolution": convolution, "Deconvolution": deconvolution, "Pooling": pooling,
    "InnerProduct": inner_product, "LRN": lrn, "BatchNorm": batch_norm, "Scale": scale,
    "PReLU": prelu, "ReLU": _elementwise("ReLU", _relu_body),
    "Sigmoid": _elementwise("Sigmoid", lambda rng: ""),
    "TanH": _elementwise("TanH", lambda rng: ""), "Power": power,
    "AbsVal": _elementwise("AbsVal", lambda rng: ""), "ELU": _elementwise("ELU", _elu_body),
    "Exp": _elementwise("Exp", _exp_body), "BNLL": _elementwise("BNLL", lambda rng: ""),
    # Caffe's Threshold has no backward pass (NOT_IMPLEMENTED): forward only.
    "Threshold": _elementwise("Threshold", _threshold_body, backward=False),
    "Dropout": dropout, "Split": split, "Silence": silence, "Eltwise": eltwise,
    "Concat": concat, "Flatten": flatten, "Reshape": reshape, "Slice": slice_,
    "Softmax": softmax, "SoftmaxWithLoss": softmax_with_loss, "EuclideanLoss": euclidean_loss,
    "Accuracy": accuracy, "net": small_net,
}


def finish(case: NetCase, rng: Rng) -> str | None:
    """Add weights of the shapes sparknet gives the layers and gradients for the outputs.

    Returns None, or sparknet's one-line error when it will not build the definition.
    """
    try:
        net = build_net(parse_net_text(case.prototxt, source=case.name), phase=case.phase)
    except SparknetError as err:
        return str(err)
    # Now and then no weights at all: both sides then fill every blob with Caffe's default
    # fillers (constants: 0 for weights and biases, 1 for Scale, 0.25 for PReLU).
    defaults = case.layer_type != "net" and rng.random() < 0.15
    if defaults:
        case.note += " default_fillers"
    for name, blobs in ({} if defaults else net.caffe_blobs()).items():
        module = net.layer_module(name)
        for i, blob in enumerate(blobs):
            value = rng.normal(size=blob.shape).astype(np.float32)
            if module is not None and module.caffe_type == "BatchNorm":
                # mean, variance and scale factor: a variance must not be negative, and the
                # factor is sometimes 0 (Caffe then uses zero statistics).
                value = np.abs(value) + np.float32(0.1) if i else value
                if i == 2 and case.layer_type == "BatchNorm" and rng.random() < 0.2:
                    value[...] = 0
            case.arrays[f"param:{name}:{i}"] = value
    if case.backward:
        losses = set(net.loss_weights)
        for output in caffe_outputs(net.definition):
            if output not in losses and output in net.blob_shapes:
                shape = net.blob_shapes[output]
                assert shape is not None
                case.arrays[f"top_diff:{output}"] = rng.normal(size=shape).astype(np.float32)
    return None


def caffe_outputs(definition: Any) -> list[str]:
    """The net's outputs by Caffe's rule (blobs no later layer reads; an in-place layer's top
    counts), worked out here so that the harness does not trust the code under test."""
    available: dict[str, None] = {}
    for item in definition.layer:
        for bottom in item.bottom:
            available.pop(bottom, None)
        available.update(dict.fromkeys(item.top))
    return list(available)
