"""The Caffe model kind: ``caffe:`` references, Data-layer input, Caffe solvers, caffemodels.

A reference ``caffe:NET.prototxt[@WEIGHTS.caffemodel][#C,H,W]`` names a Caffe definition, its
optional weights and, for nets whose Data layer does not declare a shape, the per-example
input shape. The net's first input (the Data layer's ``top[0]``) takes the features and
``top[1]`` the label, as SparkNet mapped them. The TRAIN Data layer's transform_param (scale,
mean, crop, mirror) prepares the input wherever the net is trained or scored; a Caffe solver
(its text is part of the config) drives the local steps; a finished run also writes
``model.caffemodel`` + ``deploy.prototxt``. The engine reaches all of this through the
``ModelKind`` interface only (``sparknet.models.registry`` names this module as a plug-in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sparknet.caffe.database import DatabaseSource, database_shape, source_of_layer
from sparknet.caffe.hdf5_data import HDF5Source, hdf5_shape, hdf5_source_of_layer
from sparknet.caffe.net import DATA_TYPES, CaffeLogits, CaffeNet
from sparknet.caffe.prototxt import filter_phase, read_net, read_text
from sparknet.caffe.solver import SolverConfig, parse_solver_text
from sparknet.caffe.solver import make_optimizer as make_caffe_solver
from sparknet.caffe.solver_state import (
    SolverState,
    check_schedule,
    learned_net_path,
    read_solverstate,
    restore_solverstate,
)
from sparknet.caffe.transform import TransformConfig, load_mean, transform_batch
from sparknet.caffe.weights import read_weights
from sparknet.config import OptimizerConfig
from sparknet.data.shards import InputSpec
from sparknet.errors import ConfigError, DataError
from sparknet.models.kinds import InputPrep, LocalOptimizer, ModelKind

PREFIX = "caffe:"
CAFFEMODEL = "model.caffemodel"
DEPLOY = "deploy.prototxt"


@dataclass(frozen=True, kw_only=True)
class CaffeRef:
    """A parsed ``caffe:`` reference; ``input_shape`` is per example (C, H, W)."""

    net: str
    weights: str | None = None
    input_shape: tuple[int, ...] | None = None

    def __str__(self) -> str:
        text = PREFIX + self.net + (f"@{self.weights}" if self.weights else "")
        return text + (f"#{','.join(map(str, self.input_shape))}" if self.input_shape else "")


def is_caffe_ref(model: object) -> bool:
    return isinstance(model, str) and model.startswith(PREFIX)


def parse_caffe_ref(ref: str) -> CaffeRef:
    """Parses ``caffe:NET[@WEIGHTS][#C,H,W]`` and checks the files exist."""
    body = ref.removeprefix(PREFIX)
    body, _, shape_text = body.partition("#")
    net, _, weights = body.partition("@")
    shape: tuple[int, ...] | None = None
    if shape_text:
        try:
            shape = tuple(int(d) for d in shape_text.split(","))
        except ValueError:
            shape = ()
        if not shape or min(shape) < 1:
            raise ConfigError(f"model {ref!r}: input shape {shape_text!r} is invalid; write "
                              "it as #C,H,W, e.g. caffe:lenet.prototxt#1,28,28")
    for kind, path in (("definition", net), ("weights", weights)):
        if path and not Path(path).is_file():
            raise ConfigError(f"model {ref!r}: the Caffe {kind} file {path} does not exist; "
                              "check the path (it must be readable on every executor too)")
    if not net:
        raise ConfigError(f"model {ref!r} names no definition: use caffe:NET.prototxt")
    return CaffeRef(net=net, weights=weights or None, input_shape=shape)


def resolve(ref: str) -> CaffeModel:
    """The registry's entry point for ``caffe:`` references."""
    parsed = parse_caffe_ref(ref)
    return CaffeModel(key=str(parsed), ref=parsed, transform=train_transform(parsed))


def _train_definition(ref: CaffeRef) -> Any:
    return filter_phase(read_net(ref.net), "TRAIN")


def _data_layer(definition: Any) -> Any | None:
    return next((layer for layer in definition.layer if layer.type in DATA_TYPES), None)


def build_model(ref: CaffeRef) -> nn.Module:
    """The TRAIN-phase net as input -> logits; fillers draw from the current torch seed."""
    definition = _train_definition(ref)
    shapes = None
    first = _data_layer(definition)
    if ref.input_shape is not None and first is not None and len(first.top):
        shapes = {first.top[0]: (1, *ref.input_shape)}
    # The engine seeds torch with config.seed before building, so the seed picks the fillers.
    net = CaffeNet(definition, phase="TRAIN", input_shapes=shapes, seed=torch.initial_seed())
    if ref.weights:
        net.load_report = net.load_caffe_blobs(read_weights(ref.weights), source=ref.weights)
    return CaffeLogits(net)


def train_transform(ref: CaffeRef) -> TransformConfig | None:
    """The TRAIN-phase Data layer's transform_param (None when it has none)."""
    layer = _data_layer(_train_definition(ref))
    # Caffe's HDF5Data has no DataTransformer: a transform_param there is ignored.
    if layer is None or layer.type == "HDF5Data" or not layer.HasField("transform_param"):
        return None
    return TransformConfig.from_proto(layer.transform_param, folder=Path(ref.net).parent)


@lru_cache(maxsize=4)
def _mean_image(transform: TransformConfig) -> np.ndarray | None:
    return load_mean(transform)  # read once per Python worker, not per batch


@dataclass(frozen=True)
class CaffeInput:
    """Caffe's DataTransformer on stored pixels ``[n, C, H, W]`` (crop, mirror, mean, scale).

    Random crops and mirrors draw from the task's ``rng``, a function of (seed, round,
    partition), so retried tasks repeat them.
    """

    transform: TransformConfig
    stored_shape: tuple[int, ...]

    @property
    def network_shape(self) -> tuple[int, ...]:
        return network_shape(self.transform, self.stored_shape)

    @property
    def on_device(self) -> bool:
        return False  # crops and mirrors are drawn and cut with NumPy, on the CPU

    def __call__(self, features: np.ndarray | torch.Tensor, device: torch.device, *,
                 train: bool, rng: np.random.Generator) -> torch.Tensor:
        if isinstance(features, torch.Tensor):
            features = features.cpu().numpy()
        pixels = np.asarray(features).reshape(features.shape[0], *self.stored_shape)
        out = transform_batch(pixels, self.transform, train=train, rng=rng,
                              mean=_mean_image(self.transform))
        return torch.from_numpy(out).to(device)

    def serving(self, features: torch.Tensor) -> torch.Tensor:
        """TEST phase without mirroring: centre crop, mean, scale."""
        x = features.reshape(-1, *self.stored_shape)
        crop = self.transform.crop_size
        if crop:
            top, left = (x.shape[2] - crop) // 2, (x.shape[3] - crop) // 2
            x = x[:, :, top: top + crop, left: left + crop]
        mean = _mean_image(self.transform)
        if mean is not None:
            if crop:
                mean = mean[:, top: top + crop, left: left + crop]
            x = x - torch.from_numpy(np.ascontiguousarray(mean))
        elif self.transform.mean_value:
            values = torch.tensor(self.transform.mean_value, dtype=torch.float32)
            x = x - (values if values.numel() == 1 else values.reshape(1, -1, 1, 1))
        return x * self.transform.scale


@dataclass(frozen=True)
class CaffeSolverOptimizer:
    """A Caffe solver starting at the worker's global iteration (its lr_policy). With a
    ``snapshot`` (a .solverstate path), the solver made for the snapshot's iteration, where
    training starts, holds the snapshot's history, as Caffe's restored solver."""

    solver: SolverConfig
    snapshot: str | None = None
    snapshot_iteration: int = 0

    @property
    def micro_batches(self) -> int:
        return self.solver.iter_size

    @property
    def momentum_key(self) -> str:
        return "history"  # CaffeSolver keeps Caffe's momentum (learning rate included) there

    @property
    def has_momentum(self) -> bool:
        return self.solver.type in ("SGD", "Nesterov") and self.solver.momentum > 0

    def make(self, module: nn.Module, *, iteration: int) -> torch.optim.Optimizer:
        optimizer = make_caffe_solver(module, self.solver)
        optimizer.iteration = iteration
        if self.snapshot is not None and iteration == self.snapshot_iteration:
            restore_solverstate(optimizer, module, snapshot_state(self.snapshot))
        return optimizer


def snapshot_state(path: str | Path) -> SolverState:
    """The parsed .solverstate (read once per Python worker while the file is unchanged)."""
    try:
        stat = Path(path).stat()
    except OSError as err:
        raise ConfigError(f"optimizer.caffe_snapshot {path} cannot be read ({err.strerror}): "
                          "give the .solverstate Caffe's snapshot wrote") from None
    return _snapshot_state(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=1)
def _snapshot_state(path: str, mtime_ns: int, size: int) -> SolverState:
    return read_solverstate(path)


@dataclass(frozen=True)
class CaffeModel(ModelKind):
    """A Caffe-defined network (see the module docstring)."""

    ref: CaffeRef | None = None
    transform: TransformConfig | None = None

    def build(self) -> nn.Module:
        assert self.ref is not None
        return build_model(self.ref)

    def input_prep(self, spec: InputSpec) -> InputPrep:
        if self.transform is None:
            return super().input_prep(spec)
        return CaffeInput(self.transform, spec.shape)

    def network_shape(self, stored_shape: tuple[int, ...]) -> tuple[int, ...]:
        return network_shape(self.transform, stored_shape)

    def local_optimizer(self, config: OptimizerConfig) -> LocalOptimizer:
        if config.name != "caffe" or config.caffe_solver is None:
            return super().local_optimizer(config)
        solver = parse_solver_text(config.caffe_solver, source="optimizer.caffe_solver")
        if config.momentum_policy == "average" and solver.type not in ("SGD", "Nesterov"):
            raise ConfigError(f"optimizer.momentum_policy='average' is invalid: the "
                              f"{solver.type} solver keeps more than a momentum buffer; use "
                              "'reset' (averaging works with SGD and Nesterov solvers)")
        if config.caffe_snapshot is None:
            return CaffeSolverOptimizer(solver)
        state = snapshot_state(config.caffe_snapshot)
        check_schedule(solver, state, source=config.caffe_snapshot)
        return CaffeSolverOptimizer(solver, snapshot=config.caffe_snapshot,
                                    snapshot_iteration=state.iteration)

    def starting_point(self, config: OptimizerConfig, module: nn.Module) -> int:
        """A Caffe snapshot's start: its caffemodel's weights (learned_net) go into
        ``module`` and its iteration is where training goes on, as ``caffe train
        --snapshot``; weights in the reference too are refused, as Caffe refuses
        ``--weights`` with ``--snapshot``."""
        if config.name != "caffe" or config.caffe_snapshot is None:
            return 0
        assert self.ref is not None
        if self.ref.weights:
            raise ConfigError(f"model {self.key!r} names weights ({self.ref.weights}) and "
                              f"optimizer.caffe_snapshot {config.caffe_snapshot} names its own: "
                              "give a snapshot to resume training or weights to fine-tune, "
                              "not both (as Caffe)")
        state = snapshot_state(config.caffe_snapshot)
        learned = learned_net_path(config.caffe_snapshot, state)
        net = getattr(module, "net", None)
        if learned is not None and isinstance(net, CaffeNet):
            net.load_report = net.load_caffe_blobs(read_weights(learned), source=str(learned))
        return state.iteration

    def write_exports(self, module: nn.Module, folder: Path) -> list[Path]:
        return list(write_caffe_files(module, folder))


def network_shape(transform: TransformConfig | None, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The per-example shape the net sees after cropping stored examples of ``shape``."""
    if transform is None or not transform.crop_size or len(shape) != 3:
        return shape
    return (shape[0], transform.crop_size, transform.crop_size)


def with_input_shape(model: str, shape: tuple[int, ...]) -> str:
    """Adds ``#C,H,W`` to a caffe reference whose Data layer does not declare a shape."""
    ref = parse_caffe_ref(model)
    if ref.input_shape is not None:
        return model
    layer = _data_layer(_train_definition(ref))
    if layer is None or layer.type == "Input":
        return model
    return str(replace(ref, input_shape=network_shape(train_transform(ref), shape)))


def _training_source(layer: Any, ref: CaffeRef) -> DatabaseSource | HDF5Source | None:
    folder = Path(ref.net).parent
    if layer is not None and layer.type == "Data" and layer.data_param.source:
        return source_of_layer(layer, folder=folder)
    if layer is not None and layer.type == "HDF5Data" and layer.hdf5_data_param.source:
        return hdf5_source_of_layer(layer, folder=folder)
    return None


def training_database(model: str) -> DatabaseSource | HDF5Source | None:
    """The LMDB/LevelDB that the TRAIN-phase Data layer of a ``caffe:`` reference names, or
    the HDF5 files its HDF5Data layer's list names, when they exist (None otherwise: the
    CLI then trains on what its flags name)."""
    ref = parse_caffe_ref(model)
    try:
        return _training_source(_data_layer(_train_definition(ref)), ref)
    except DataError:
        return None


def unusable_training_source(model: str) -> str | None:
    """Why the database (or HDF5 file list) the TRAIN-phase data layer names cannot be used
    (it is missing or broken), or None when it names none or it can be used."""
    ref = parse_caffe_ref(model)
    try:
        _training_source(_data_layer(_train_definition(ref)), ref)
    except DataError as exc:
        return str(exc)
    return None


def training_shape(source: DatabaseSource | HDF5Source) -> tuple[int, ...]:
    """The per-example shape of a training source: a database's first record (C, H, W), an
    HDF5 list's first row of its data dataset."""
    if isinstance(source, HDF5Source):
        return hdf5_shape(source)
    return database_shape(source)


def with_database_shape(model: str) -> str:
    """Adds ``#C,H,W`` from the first record of the database the net's Data layer names (the
    shape Caffe's Data layer infers), cropped by its transform, or the first row of its
    HDF5Data layer's data; unchanged without one."""
    database = training_database(model)
    if database is None:
        return model
    return with_input_shape(model, training_shape(database))


def data_layer_batch_size(model: str) -> int:
    """The TRAIN-phase data layer's batch_size (0 when it sets none)."""
    layer = _data_layer(_train_definition(parse_caffe_ref(model)))
    return _layer_batch_size(layer) if layer is not None else 0


def read_solver_file(path: str | Path) -> tuple[str, SolverConfig]:
    """(the solver's text, the parsed solver); its ``net:`` is relative to its folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Caffe solver {path} does not exist: give the path of a solver "
                          ".prototxt")
    text = read_text(path)
    return text, parse_solver_text(text, folder=path.parent, source=str(path))


def apply_solver(values: dict[str, Any], solver_path: str | Path, *,
                 input_shape: tuple[int, ...], from_database: bool = False) -> dict[str, Any]:
    """Configuration values (defaults < TOML < flags) completed from a Caffe solver file.

    The solver's text becomes ``optimizer.caffe_solver`` (so the run never reads the file
    again) and it sets the model (its ``net``, unless a ``model`` is given); settings not given
    are mapped: rounds = ceil(max_iter / tau), eval_every = ceil(test_interval / tau),
    checkpoint_every = ceil(snapshot / tau), batch_size = the TRAIN Data layer's batch_size.
    With ``optimizer.caffe_snapshot`` the run starts at the snapshot's iteration I, so
    rounds = ceil((max_iter - I) / tau), as Caffe runs the iterations left. With
    ``from_database`` the input shape comes from the database the Data layer names, when it
    exists.
    """
    text, solver = read_solver_file(solver_path)
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v)
                           for k, v in values.items()}
    optimizer = out.setdefault("optimizer", {})
    optimizer.update(name="caffe", caffe_solver=text)
    model: str | None = out.get("model")
    if model is None:
        if solver.net is None or not solver.net.is_file():
            raise ConfigError(f"solver {solver_path} names net {solver.net}, which does not "
                              "exist (paths are relative to the solver's folder): pass --model "
                              "caffe:NET.prototxt")
        model = f"{PREFIX}{solver.net}"
    if not is_caffe_ref(model):
        raise ConfigError(f"--caffe-solver trains a Caffe net, but model={model!r}: leave "
                          "--model out or give caffe:NET.prototxt")
    if from_database:
        model = with_database_shape(model)
    out["model"] = with_input_shape(model, input_shape)
    engine = out.setdefault("engine", {})
    layer = _data_layer(_train_definition(parse_caffe_ref(out["model"])))
    batch = _layer_batch_size(layer) if layer is not None else 0
    if batch and "batch_size" not in engine:
        engine["batch_size"] = batch
    tau = engine.get("tau")
    snapshot = optimizer.get("caffe_snapshot")
    start = snapshot_state(snapshot).iteration if snapshot else 0
    if "rounds" not in engine:
        if not isinstance(tau, int):
            raise ConfigError("--caffe-solver maps max_iter to rounds = ceil(max_iter / tau): "
                              "give --tau N, or --rounds R")
        if solver.max_iter < 1:
            raise ConfigError(f"solver {solver_path} has max_iter={solver.max_iter}: set "
                              "max_iter or give --rounds R")
        if start >= solver.max_iter:
            raise ConfigError(f"the snapshot {snapshot} is at iteration {start} and solver "
                              f"{solver_path} stops at max_iter={solver.max_iter}: nothing "
                              "is left to train; raise max_iter or give --rounds R")
        engine["rounds"] = math.ceil((solver.max_iter - start) / tau)
    if isinstance(tau, int):
        if "eval_every" not in engine:
            engine["eval_every"] = math.ceil(solver.test_interval / tau)
        if "checkpoint_every" not in out:
            out["checkpoint_every"] = math.ceil(solver.snapshot / tau)
    return out


def _layer_batch_size(layer: Any) -> int:
    for name in ("data_param", "image_data_param", "memory_data_param", "hdf5_data_param"):
        if layer.HasField(name):
            return int(getattr(layer, name).batch_size)
    return 0


def write_caffe_files(module: nn.Module, folder: str | Path) -> tuple[Path, Path]:
    """Writes the trained net as ``model.caffemodel`` plus ``deploy.prototxt`` in ``folder``."""
    net = getattr(module, "net", None)
    if net is None or not hasattr(net, "to_caffemodel"):
        raise ConfigError(f"{type(module).__name__} is not a Caffe-defined network")
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    net.to_caffemodel(target / CAFFEMODEL)
    net.to_deploy_prototxt(target / DEPLOY)
    return target / CAFFEMODEL, target / DEPLOY
