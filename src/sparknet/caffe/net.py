"""A Caffe NetParameter (a graph of named blobs) as one torch module.

``CaffeNet`` runs its layers in definition order on a dict of blobs, so in-place layers
simply rebind a blob name, exactly as Caffe overwrites the blob.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from google.protobuf import text_format
from torch import nn

from sparknet.caffe import array_layers, blob_ops, hdf5_output, layers, losses, recurrent, schema
from sparknet.caffe.dummy_data import DummyData, dummy_shapes
from sparknet.caffe.prototxt import filter_phase, insert_splits, read_net
from sparknet.caffe.support import check_fields, unsupported_type_message
from sparknet.caffe.weights import LayerBlobs, array_to_blob, fit_legacy_shape, read_weights
from sparknet.errors import CaffeFormatError, DataError

Shape = tuple[int, ...]
Builder = Callable[[Any, Sequence[Shape], "torch.Generator | None"], layers.CaffeLayer]

BUILDERS: dict[str, Builder] = {
    "Convolution": layers.Convolution, "Deconvolution": layers.Convolution,
    "Pooling": layers.Pooling, "InnerProduct": layers.InnerProduct, "LRN": layers.LRN,
    "BatchNorm": layers.BatchNorm, "Scale": layers.Scale, "PReLU": layers.PReLU,
    **dict.fromkeys(("ReLU", "Sigmoid", "TanH", "Power", "AbsVal", "ELU", "Exp", "BNLL",
                     "Threshold"), blob_ops.Elementwise),
    "Dropout": blob_ops.Identity, "Split": blob_ops.Identity, "Silence": blob_ops.Identity,
    "Eltwise": blob_ops.Eltwise, "Concat": blob_ops.Concat, "Flatten": blob_ops.Flatten,
    "Reshape": blob_ops.Reshape, "Slice": blob_ops.Slice, "Softmax": blob_ops.Softmax,
    "SoftmaxWithLoss": blob_ops.SoftmaxWithLoss, "EuclideanLoss": blob_ops.EuclideanLoss,
    "Accuracy": blob_ops.Accuracy,
    **dict.fromkeys(("Log", "Swish", "Clip"), blob_ops.Elementwise),
    "Bias": array_layers.Bias, "Crop": array_layers.Crop, "Tile": array_layers.Tile,
    "Reduction": array_layers.Reduction, "ArgMax": array_layers.ArgMax,
    "MVN": array_layers.MVN, "Embed": array_layers.Embed, "Im2col": array_layers.Im2col,
    "Parameter": array_layers.Parameter, "BatchReindex": array_layers.BatchReindex,
    "Filter": array_layers.Filter, "SPP": array_layers.SPP,
    "SigmoidCrossEntropyLoss": losses.SigmoidCrossEntropyLoss,
    "HingeLoss": losses.HingeLoss, "MultinomialLogisticLoss": losses.MultinomialLogisticLoss,
    "InfogainLoss": losses.InfogainLoss, "ContrastiveLoss": losses.ContrastiveLoss,
    "LSTM": recurrent.LSTM, "RNN": recurrent.RNN, "LSTMUnit": recurrent.LSTMUnit,
    "HDF5Output": hdf5_output.HDF5Output,
}
# Caffe refuses these in place (CHECK top != bottom); LRN in place computes wrong values
# (its output overwrites the input it still reads), so sparknet refuses it too.
NOT_IN_PLACE = ("AbsVal", "Flatten", "Reshape", "LRN")
DATA_TYPES = ("Input", "Data", "ImageData", "MemoryData", "HDF5Data", "DummyData", "WindowData")
METRIC_TYPES = ("SoftmaxWithLoss", "EuclideanLoss", "Accuracy", "Silence",
                "SigmoidCrossEntropyLoss", "HingeLoss", "MultinomialLogisticLoss",
                "InfogainLoss", "ContrastiveLoss")
SUPPORTED_TYPES = tuple(sorted((*BUILDERS, *DATA_TYPES)))


class UnknownShapeError(CaffeFormatError):
    """A bottom's shape is known only to a data source (a Data layer's database): the
    definition is sound, but building it needs ``input_shapes``."""


def check_structure(net: Any, *, phase: str) -> Any:
    """The definition of ``phase`` once its layers are known types with unique names and
    each reads only blobs that earlier layers write (else one CaffeFormatError line)."""
    definition = add_automatic_tops(filter_phase(net, phase))
    seen: dict[str, int] = {}
    for index, layer in enumerate(definition.layer):
        where = f"layer {layer.name!r} ({layer.type})"
        if layer.type not in BUILDERS and layer.type not in DATA_TYPES:
            raise CaffeFormatError(unsupported_type_message(layer, SUPPORTED_TYPES))
        check_fields(layer)
        if not layer.name:
            raise CaffeFormatError(f"layer {index} ({layer.type}) has no name; give it one")
        key = _module_key(layer.name)
        if key in seen:
            raise CaffeFormatError(
                f"{where}: layer {index} has the name of layer {seen[key]} ({phase} phase); "
                "give each layer its own name")
        seen[key] = index
    graph = insert_splits(definition)  # raises for a bottom no earlier layer writes (a cycle)
    for layer in graph.layer:  # in place once Caffe's Split layers are in
        if layer.type in NOT_IN_PLACE and set(layer.top) & set(layer.bottom):
            raise CaffeFormatError(f"layer {layer.name!r} ({layer.type}): Caffe's {layer.type} "
                                   "cannot run in place; give it a top of its own")
    return definition


AUTOMATIC_TOP = "(automatic)"


def add_automatic_tops(definition: Any) -> Any:
    """Caffe gives a loss layer written without ``top:`` an anonymous top (its loss, weight
    1) named "(automatic)"; a second one here is "(automatic)_2" and so on, so that each
    loss stays its own blob."""
    count = 0
    for layer in definition.layer:
        if layer.type.endswith("Loss") and not len(layer.top):
            count += 1
            layer.top.append(AUTOMATIC_TOP if count == 1 else f"{AUTOMATIC_TOP}_{count}")
    return definition


@dataclass(frozen=True, kw_only=True)
class ParamSpec:
    """Caffe's per-blob multipliers of the solver's learning rate and weight decay."""

    lr_mult: float = 1.0
    decay_mult: float = 1.0


@dataclass(frozen=True, kw_only=True)
class LoadReport:
    """What a weight load did: layers loaded, and those present on only one side."""

    loaded: tuple[str, ...]
    extra: tuple[str, ...]
    missing: tuple[str, ...]


def data_shapes(layer: Any) -> list[Shape | None]:
    """Declared shapes of a data layer's tops (None where only the data source knows)."""
    t = layer.type
    if t == "Input":
        declared: list[Shape | None] = [tuple(int(d) for d in s.dim)
                                        for s in layer.input_param.shape]
        return declared * len(layer.top) if len(declared) == 1 else declared
    if t == "MemoryData":
        p = layer.memory_data_param
        return [(p.batch_size, p.channels, p.height, p.width), (p.batch_size,)]
    if t == "DummyData":
        return list(dummy_shapes(layer))
    batch = {"Data": layer.data_param.batch_size, "ImageData": layer.image_data_param.batch_size,
             "HDF5Data": layer.hdf5_data_param.batch_size}.get(t)
    shapes: list[Shape | None] = [None, (batch,) if batch else None]
    return shapes[: len(layer.top)]


class CaffeNet(nn.Module):
    """A Caffe network for one phase. ``forward`` returns every top blob by name.

    Attributes: ``input_names``, ``input_shapes``, ``output_names`` (tops nothing consumes),
    ``logits_blob``, ``param_specs`` (parameter name -> ParamSpec), ``loss_weights``.
    """

    def __init__(self, net: Any, *, phase: str = "TEST",
                 input_shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0) -> None:
        super().__init__()
        self.phase = phase
        self.definition = check_structure(net, phase=phase)
        graph = insert_splits(self.definition)
        self.name: str = net.name
        self.layers = nn.ModuleDict()
        self._plan: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = []
        self._stop_gradient: dict[str, tuple[int, ...]] = {}  # propagate_down: false
        self.input_names: list[str] = []
        self.input_shapes: dict[str, Shape | None] = {}
        self.loss_weights: dict[str, float] = {}
        self.param_specs: dict[str, ParamSpec] = {}
        self.blob_shapes: dict[str, Shape | None] = {}
        self._shared: dict[str, tuple[str, nn.Parameter, str]] = {}  # param name -> owner
        self._given_mults: dict[str, set[str]] = {}  # owner -> multipliers a prototxt gave
        self.load_report: LoadReport | None = None
        gen = torch.Generator().manual_seed(seed)
        # DummyData draws its non-constant fillers in every forward pass, from its own seed.
        self._dummy: list[DummyData] = []
        self._dummy_gen = torch.Generator().manual_seed((seed + 1) % (1 << 63))
        given = {k: tuple(int(d) for d in v) for k, v in (input_shapes or {}).items()}
        probe: dict[str, torch.Tensor] = {}
        for layer in graph.layer:
            if layer.type in DATA_TYPES:
                self._add_inputs(layer, given, probe)
                if layer.type == "DummyData":
                    self._dummy.append(DummyData(layer, generator=self._dummy_gen))
            else:
                self._add_layer(layer, probe, gen)
        unused = set(given) - set(self.input_names)
        if unused:
            raise CaffeFormatError(f"input_shapes names {sorted(unused)}, which are not inputs "
                                   f"of net {self.name!r}; its inputs are {self.input_names}")
        self.output_names = self._outputs()
        self.logits_blob = self._find_logits()
        self.train(phase == "TRAIN")

    # -- construction -----------------------------------------------------------------------

    def _add_inputs(self, layer: Any, given: dict[str, Shape], probe: dict[str, torch.Tensor]
                    ) -> None:
        declared = data_shapes(layer)
        first = given.get(layer.top[0]) if len(layer.top) else None
        if layer.type not in ("Input", "DummyData") and first is not None and len(declared) > 1:
            declared[1] = (first[0],)  # the label follows the batch size given for the data
        for i, top in enumerate(layer.top):
            shape = given.get(top, declared[i] if i < len(declared) else None)
            self.input_names.append(top)
            self.input_shapes[top] = shape
            self.blob_shapes[top] = shape
            if shape is not None:
                probe[top] = torch.zeros(shape)

    def _add_layer(self, layer: Any, probe: dict[str, torch.Tensor], gen: torch.Generator) -> None:
        where = f"layer {layer.name!r} ({layer.type})"
        missing = [b for b in layer.bottom if b not in probe]
        if missing:
            if layer.type in (*METRIC_TYPES, "HDF5Output"):  # a label of unknown shape
                probe_ok = False  # (its batch only the data source knows): runnable later
            else:
                raise UnknownShapeError(
                    f"{where}: the shape of bottom {missing[0]!r} is unknown (a data layer "
                    "whose shape only its data source knows); pass input_shapes={"
                    f"{missing[0]!r}: (N, C, H, W)}}"
                )
        else:
            probe_ok = True
        key = _module_key(layer.name)
        shapes = [tuple(probe[b].shape) if b in probe else (1,) for b in layer.bottom]
        if not shapes and layer.type not in ("Silence", "Parameter"):
            raise CaffeFormatError(f"{where}: has no bottom; give it its input blob")
        try:
            module = BUILDERS[layer.type](layer, shapes, gen)
            tops = self._probe(module, [probe[b] for b in layer.bottom]) if probe_ok else None
        except (RuntimeError, ValueError, IndexError, TypeError, ZeroDivisionError,
                OverflowError) as err:
            if isinstance(err, CaffeFormatError):
                raise
            raise CaffeFormatError(f"{where} does not fit bottoms of shapes {shapes}: {err}"
                                   ) from err
        self.layers[key] = module
        self._plan.append((key, layer.type, tuple(layer.bottom), tuple(layer.top)))
        self._add_propagate_down(layer, where, key)
        self._add_specs(layer, key, module)
        self._add_loss_weights(layer)
        if tops is not None:
            if len(tops) != len(layer.top):
                raise CaffeFormatError(f"{where}: has {len(layer.top)} tops, needs {len(tops)}")
            for name, t in zip(layer.top, tops, strict=True):
                probe[name] = t
                self.blob_shapes[name] = tuple(t.shape)
        else:
            for name in layer.top:
                self.blob_shapes[name] = ()

    def _outputs(self) -> list[str]:
        # Caffe's rule: a blob is an output when no later layer reads it, so the top of an
        # in-place layer (which reads and rewrites its blob) still counts.
        available = dict.fromkeys(self.input_names)
        for _, _, bottoms, tops in self._plan:
            for b in bottoms:
                available.pop(b, None)
            available.update(dict.fromkeys(tops))
        return list(available)

    @staticmethod
    def _probe(module: layers.CaffeLayer, bottoms: list[torch.Tensor]) -> tuple[Any, ...]:
        with torch.no_grad():
            was = module.training
            # Probing must not change the blobs: BatchNorm with use_global_stats: false
            # updates its statistics (blobs outside the solver) in any phase. Trainable blobs
            # cannot change without a step, so they are not copied (AlexNet's fc6 is 151 MB).
            saved = [(blob, blob.detach().clone()) for blob in module.blobs
                     if not blob.requires_grad]
            module.eval()
            with module.probing():
                tops = module(*bottoms)
            module.train(was)
            for blob, value in saved:
                blob.copy_(value)
        return tuple(tops)

    def _add_specs(self, layer: Any, key: str, module: layers.CaffeLayer) -> None:
        for i, blob in enumerate(module.blobs):
            spec = layer.param[i] if i < len(layer.param) else None
            lr = spec.lr_mult if spec is not None else 1.0
            decay = spec.decay_mult if spec is not None else 1.0
            if layer.type == "BatchNorm":  # Caffe masks BN statistics from the solver
                lr = 0.0
            name = f"layers.{key}.blobs.{i}"
            if spec is not None and spec.name:
                owner = self._shared.get(spec.name)
                if owner is not None:  # a later use: the owner's parameter itself
                    self._share(layer, i, spec, module, blob, owner)
                    continue
                self._shared[spec.name] = (name, blob, layer.name)
                self._given_mults[name] = {f for f in ("lr_mult", "decay_mult")
                                           if spec.HasField(f)}
            self.param_specs[name] = ParamSpec(lr_mult=lr, decay_mult=decay)

    def _share(self, layer: Any, index: int, spec: Any, module: layers.CaffeLayer,
               blob: nn.Parameter, owner: tuple[str, nn.Parameter, str]) -> None:
        """Caffe's Net::AppendParam for a name seen before: this layer uses the owner's blob
        (gradients of every use add up). Shapes must be equal (STRICT, the default); with
        ``share_mode: PERMISSIVE`` on this layer's param only the counts must be, and the
        layer reads the owner's values in its own shape (Caffe's ShareData). A given
        lr_mult/decay_mult must equal the owner's."""
        owner_name, owner_blob, owner_layer = owner
        where = f"layer {layer.name!r} ({layer.type}) param {index} ({spec.name!r})"
        shape, owned = tuple(blob.shape), tuple(owner_blob.shape)
        if spec.share_mode == 1:  # PERMISSIVE
            if blob.numel() != owner_blob.numel():
                raise CaffeFormatError(
                    f"{where} has shape {shape} ({blob.numel()} values), but layer "
                    f"{owner_layer!r} owns it with shape {owned} ({owner_blob.numel()}); "
                    "share_mode: PERMISSIVE needs blobs of one count")
        elif shape != owned:
            raise CaffeFormatError(f"{where} has shape {shape}, but layer {owner_layer!r} "
                                   f"owns it with shape {owned}; shared blobs need one shape "
                                   "(share_mode: PERMISSIVE allows other shapes of one count)")
        owner_spec = self.param_specs[owner_name]
        for field in ("lr_mult", "decay_mult"):
            if not spec.HasField(field):
                continue
            value = getattr(spec, field)
            if field in self._given_mults.get(owner_name, ()):
                if value != getattr(owner_spec, field):
                    raise CaffeFormatError(
                        f"{where}: {field} {value} differs from the {getattr(owner_spec, field)}"
                        f" of layer {owner_layer!r}, which shares it; give them the same value")
            else:  # as Caffe: the first use that gives a multiplier sets it for all
                owner_spec = replace(owner_spec, **{field: value})
                self.param_specs[owner_name] = owner_spec
                self._given_mults.setdefault(owner_name, set()).add(field)
        module.blobs[index] = owner_blob
        if shape != owned:
            module.blobs.shapes[index] = shape

    def _add_propagate_down(self, layer: Any, where: str, key: str) -> None:
        flags = list(layer.propagate_down)
        if flags and len(flags) != len(layer.bottom):
            raise CaffeFormatError(f"{where}: {len(flags)} propagate_down values for "
                                   f"{len(layer.bottom)} bottoms; give one per bottom or none")
        stopped = tuple(i for i, flag in enumerate(flags) if not flag)
        if stopped and not self.definition.force_backward:  # Caffe: force_backward wins
            self._stop_gradient[key] = stopped

    def _add_loss_weights(self, layer: Any) -> None:
        weights = list(layer.loss_weight)
        if not weights and layer.type.endswith("Loss"):
            weights = [1.0]  # loss layers weigh their first top by 1 unless told otherwise
        if weights and len(weights) != len(layer.top):
            given = "" if len(layer.loss_weight) else " (a loss layer's default is one)"
            raise CaffeFormatError(
                f"layer {layer.name!r} ({layer.type}) has {len(layer.top)} tops but "
                f"{len(weights)} loss_weight values{given}; as in Caffe, give one per top "
                "(0 for a top that is no loss)")
        for top, w in zip(layer.top, weights, strict=False):
            if w:
                self.loss_weights[top] = w

    def _find_logits(self) -> str:
        for _, kind, bottoms, _ in reversed(self._plan):
            if kind in ("SoftmaxWithLoss", "Softmax"):
                return self._unsplit(bottoms[0])
        for _, kind, _, tops in reversed(self._plan):
            if kind not in METRIC_TYPES and tops:
                return tops[0]
        return self.input_names[0] if self.input_names else ""

    def _unsplit(self, blob: str) -> str:
        for _, kind, bottoms, tops in self._plan:
            if kind == "Split" and blob in tops:
                return bottoms[0]
        return blob

    def reset_carried_state(self) -> None:
        """Zero the state that LSTM and RNN layers without ``expose_hidden`` carry from one
        forward pass to the next (Caffe's RecurrentLayer::Reset)."""
        for module in self.layers.values():
            if isinstance(module, recurrent.Recurrent):
                module.reset_carried_state()

    def layer_module(self, name: str) -> layers.CaffeLayer | None:
        """The module of the Caffe layer ``name`` (None for data layers)."""
        module = dict(self.layers.items()).get(_module_key(name))
        return module if isinstance(module, layers.CaffeLayer) else None

    # -- running ----------------------------------------------------------------------------

    def forward(self, *args: torch.Tensor, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """All top blobs by name. Give inputs by name, or one tensor for the first input.

        Inputs consumed only by loss/accuracy layers (labels) may be left out; those layers
        are then skipped.
        """
        return self.run(self._bind(args, inputs))

    def run(self, blobs: dict[str, torch.Tensor], *, targets: Sequence[str] | None = None
            ) -> dict[str, torch.Tensor]:
        """Run the layers needed for ``targets`` (default: all) on named input blobs. The tops
        of DummyData layers not given are its fillers' values (Caffe's forward pass)."""
        needed = self._needed(targets) if targets is not None else None
        blobs = dict(blobs)
        for dummy in self._dummy:
            if not set(dummy.names) <= set(blobs):
                blobs.update({k: v for k, v in dummy.tops().items() if k not in blobs})
        for index, (key, kind, bottoms, tops) in enumerate(self._plan):
            if needed is not None and index not in needed:
                continue
            missing = [b for b in bottoms if b not in blobs]
            if missing:
                if kind in METRIC_TYPES:
                    continue
                raise DataError(f"layer {key!r} ({kind}) needs blob {missing[0]!r}; give input "
                                f"{missing[0]!r} (the net's inputs: {self.input_names})")
            inputs = [blobs[b] for b in bottoms]
            for i in self._stop_gradient.get(key, ()):
                inputs[i] = inputs[i].detach()  # Caffe sends this bottom no gradient
            outs = self.layers[key](*inputs)
            blobs.update(zip(tops, outs, strict=True))
        return blobs

    def _bind(self, args: Sequence[torch.Tensor], inputs: dict[str, torch.Tensor]
              ) -> dict[str, torch.Tensor]:
        if args:
            if len(args) != 1 or inputs or not self.input_names:
                raise DataError("give one positional tensor (the first input) or inputs by name")
            inputs = {self.input_names[0]: args[0]}
        unknown = set(inputs) - set(self.input_names)
        if unknown:
            raise DataError(f"unknown inputs {sorted(unknown)}; the net's inputs are "
                            f"{self.input_names}")
        return dict(inputs)

    def _needed(self, targets: Sequence[str]) -> set[int]:
        wanted, needed = set(targets), set()
        for index in range(len(self._plan) - 1, -1, -1):
            _, _, bottoms, tops = self._plan[index]
            if wanted & set(tops):
                needed.add(index)
                wanted.update(bottoms)
        return needed

    def total_loss(self, blobs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Caffe's objective: the sum of loss-weighted tops present in ``blobs``."""
        terms = [w * blobs[name].sum() for name, w in self.loss_weights.items() if name in blobs]
        if not terms:
            raise DataError(f"net {self.name!r} computed no loss; give the label input too")
        return torch.stack(terms).sum()

    # -- weights ----------------------------------------------------------------------------

    def caffe_blobs(self) -> dict[str, list[np.ndarray]]:
        """``{layer name: [arrays]}`` of every layer with blobs, in Caffe's order."""
        return {m.caffe_name: [b.detach().cpu().numpy().copy() for b in m.blobs]
                for m in self._modules_with_blobs()}

    def _modules_with_blobs(self) -> list[layers.CaffeLayer]:
        return [m for m in self.layers.values()
                if isinstance(m, layers.CaffeLayer) and len(m.blobs)]

    def load_caffe_blobs(self, weights: LayerBlobs, *, allow_extra: bool = False,
                         allow_missing: bool = False, source: str = "weights") -> LoadReport:
        """Copy weights in, checking every shape; extra or missing layers are errors unless
        allowed (and then reported with a warning)."""
        modules = {m.caffe_name: m for m in self._modules_with_blobs()}
        extra = tuple(n for n in weights if n not in modules)
        missing = tuple(n for n in modules if n not in weights)
        if extra and not allow_extra:
            raise CaffeFormatError(
                f"{source} holds weights for layers {list(extra)} that net {self.name!r} "
                f"({self.phase}) lacks; fix the definition or pass allow_extra_weights=True"
            )
        if missing and not allow_missing:
            raise CaffeFormatError(
                f"{source} has no weights for layers {list(missing)} of net {self.name!r}; "
                "use the matching weights file or pass allow_missing_weights=True"
            )
        staged: list[tuple[nn.Parameter, torch.Tensor]] = []
        for name, module in modules.items():
            if name not in weights:
                continue
            arrays = weights[name]
            if len(arrays) != len(module.blobs):
                raise CaffeFormatError(
                    f"{source}: {module.where()} expects {len(module.blobs)} blobs, the file "
                    f"has {len(arrays)}"
                )
            for i, (param, array) in enumerate(zip(module.blobs, arrays, strict=True)):
                fitted = fit_legacy_shape(array, tuple(param.shape))
                if fitted is None:
                    raise CaffeFormatError(
                        f"{source}: {module.where()} blob {i} has shape {tuple(array.shape)} "
                        f"but the layer expects {tuple(param.shape)}"
                    )
                staged.append((param, torch.from_numpy(np.array(fitted, dtype=np.float32))))
        with torch.no_grad():  # all shapes checked first: nothing is loaded partially
            for param, value in staged:
                param.copy_(value)
        if extra or missing:
            warnings.warn(f"{source}: ignored weights of layers {list(extra)}; layers without "
                          f"weights: {list(missing)}", stacklevel=2)
        loaded = tuple(n for n in modules if n in weights)
        return LoadReport(loaded=loaded, extra=extra, missing=missing)

    def to_net_parameter(self) -> Any:
        """The definition (this phase) with the current blobs, as Caffe's ``net.save`` has;
        a ``schema.RawNetParameter``, whose blobs hold their numbers as bytes."""
        out = schema.RawNetParameter()
        out.ParseFromString(self.definition.SerializeToString())  # same wire format
        modules = {m.caffe_name: m for m in self._modules_with_blobs()}
        for layer in out.layer:
            layer.ClearField("blobs")
            module = modules.get(layer.name)
            for blob in module.blobs if module is not None else ():
                array_to_blob(blob.detach().cpu().numpy(), layer.blobs.add())
        return out

    def to_caffemodel(self, path: str | Path) -> None:
        """Write the weights as a binary ``.caffemodel`` (blobs in BlobShape form)."""
        Path(path).write_bytes(self.to_net_parameter().SerializeToString())

    def deploy_net_parameter(self) -> Any:
        """The deploy definition: data layers become Input, losses become Softmax."""
        out = schema.NetParameter(name=self.definition.name)
        labels = set()
        for layer in self.definition.layer:
            if layer.type in DATA_TYPES:
                labels.update(layer.top[1:])
                shape = self.input_shapes.get(layer.top[0])
                if shape is None:
                    raise CaffeFormatError(f"input {layer.top[0]!r} has no known shape; build "
                                           "the net with input_shapes to write a deploy file")
                new = out.layer.add(name=layer.name, type="Input")
                new.top.append(layer.top[0])
                new.input_param.shape.add().dim.extend(shape)
                continue
            if layer.type == "SoftmaxWithLoss":
                new = out.layer.add(name="prob", type="Softmax")
                new.bottom.append(layer.bottom[0])
                new.top.append("prob")
                continue
            if layer.type in METRIC_TYPES or labels & set(layer.bottom):
                continue
            new = out.layer.add()
            new.CopyFrom(layer)
            for field in ("blobs", "include", "exclude", "loss_weight", "phase"):
                new.ClearField(field)
        return out

    def to_deploy_prototxt(self, path: str | Path) -> None:
        """Write the deploy definition as text format."""
        Path(path).write_text(text_format.MessageToString(self.deploy_net_parameter()))


class CaffeLogits(nn.Module):
    """Maps one input tensor to the logits blob of a CaffeNet (what training and ONNX use)."""

    def __init__(self, net: CaffeNet) -> None:
        super().__init__()
        if not net.input_names:
            raise CaffeFormatError(f"net {net.name!r} has no input")
        self.net = net
        self.input_name = net.input_names[0]
        self.logits_blob = net.logits_blob
        self.param_specs = {f"net.{k}": v for k, v in net.param_specs.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.run({self.input_name: x}, targets=[self.logits_blob])[self.logits_blob]


def _module_key(name: str) -> str:
    # ModuleDict keys cannot hold "." nor shadow ModuleDict's own attributes ("update", ...).
    key = name.replace(".", "_")
    return f"{key}_" if hasattr(nn.ModuleDict, key) else key


def build_net(net: Any, *, phase: str = "TEST", weights: LayerBlobs | None = None,
              input_shapes: Mapping[str, Sequence[int]] | None = None,
              allow_extra_weights: bool = False, allow_missing_weights: bool = False,
              source: str = "weights") -> CaffeNet:
    """A CaffeNet from a parsed NetParameter, optionally loading weights."""
    model = CaffeNet(net, phase=phase, input_shapes=input_shapes)
    if weights is not None:
        model.load_report = model.load_caffe_blobs(
            weights, allow_extra=allow_extra_weights, allow_missing=allow_missing_weights,
            source=source)
    return model


def load_net(prototxt: str | Path, weights: str | Path | None = None, *, phase: str = "TEST",
             allow_extra_weights: bool = False, allow_missing_weights: bool = False,
             input_shapes: Mapping[str, Sequence[int]] | None = None) -> CaffeNet:
    """Build a CaffeNet from a ``.prototxt`` and optionally a ``.caffemodel``/``.h5``.

    Weights for layers the definition lacks are an error unless ``allow_extra_weights``;
    layers with parameters but no weights are an error unless ``allow_missing_weights``.
    ``input_shapes`` gives shapes that data layers (Data, ImageData) do not declare.
    """
    blobs = read_weights(weights) if weights is not None else None
    return build_net(read_net(prototxt), phase=phase, weights=blobs, input_shapes=input_shapes,
                     allow_extra_weights=allow_extra_weights,
                     allow_missing_weights=allow_missing_weights, source=str(weights))


def logits_model(prototxt: str | Path, weights: str | Path | None = None, *,
                 phase: str = "TRAIN",
                 input_shapes: Mapping[str, Sequence[int]] | None = None) -> CaffeLogits:
    """An nn.Module mapping the net's first input to its logits blob (see CaffeNet)."""
    net = load_net(prototxt, weights, phase=phase, input_shapes=input_shapes,
                   allow_extra_weights=False)
    return CaffeLogits(net)


def parameter_count(module: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in module.parameters())
