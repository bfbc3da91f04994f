"""Training configuration: one frozen, keyword-only dataclass per component.

Every dataclass validates itself in ``__post_init__``; errors name the field, the value and
the fix. Runtime objects (SparkSession, DataFrame, models) are never fields here: configs are
plain data that can cross to Spark executors and be written to JSON.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from sparknet.errors import ConfigError

OptimizerName = Literal["sgd", "adam", "caffe"]
MomentumPolicy = Literal["reset", "average"]
OuterName = Literal["average", "weighted", "nesterov"]
Compression = Literal["none", "bf16", "int8"]
Device = Literal["cpu", "cuda", "auto"]
OnNonFinite = Literal["stop", "skip"]


def _require(ok: bool, field_name: str, value: object, fix: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}={value!r} is invalid: {fix}")


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """The optimizer each worker runs for its tau local steps.

    Attributes:
        name: ``sgd`` (PyTorch's SGD, optionally with momentum/Nesterov), ``adam``, or
            ``caffe``: the Caffe solver in ``caffe_solver`` with Caffe's update rule, its
            lr_policy at each worker's global iteration and its iter_size (lr, momentum,
            nesterov and weight_decay here are then unused).
        lr: learning rate of the local steps.
        momentum: SGD momentum (0 disables it).
        nesterov: use Nesterov momentum in the local SGD steps.
        weight_decay: L2 penalty added to the gradient.
        momentum_policy: what happens to each worker's optimizer state between rounds:
            ``reset`` starts every round from zero state (nothing extra is sent);
            ``average`` averages the state across workers like the weights (doubles traffic).
        caffe_solver: path of a Caffe solver ``.prototxt`` (``name='caffe'`` only); parsed on
            the driver to validate it, and read again on the executors, so it must be
            readable there too.
    """

    name: OptimizerName = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    momentum_policy: MomentumPolicy = "reset"
    caffe_solver: str | None = None

    def __post_init__(self) -> None:
        _require(self.name in ("sgd", "adam", "caffe"), "optimizer.name", self.name,
                 "use 'sgd', 'adam' or 'caffe'")
        _require(math.isfinite(self.lr) and self.lr > 0, "optimizer.lr", self.lr,
                 "use a positive learning rate such as 0.01")
        _require(0 <= self.momentum < 1, "optimizer.momentum", self.momentum,
                 "use a momentum in [0, 1), e.g. 0.9")
        _require(not (self.nesterov and self.momentum == 0), "optimizer.nesterov", self.nesterov,
                 "Nesterov needs momentum > 0")
        _require(self.weight_decay >= 0, "optimizer.weight_decay", self.weight_decay,
                 "use a non-negative weight decay")
        _require(self.momentum_policy in ("reset", "average"), "optimizer.momentum_policy",
                 self.momentum_policy, "use 'reset' or 'average'")
        _require((self.name == "caffe") == (self.caffe_solver is not None),
                 "optimizer.caffe_solver", self.caffe_solver,
                 "give a solver .prototxt exactly when optimizer.name is 'caffe' "
                 "(sparknet train --caffe-solver FILE)")
        if self.name == "caffe":
            from sparknet.models.caffe_ref import load_solver_checked

            solver = load_solver_checked(str(self.caffe_solver))
            _require(self.momentum_policy == "reset" or solver.type in ("SGD", "Nesterov"),
                     "optimizer.momentum_policy", self.momentum_policy,
                     f"the {solver.type} solver keeps more than a momentum buffer; use 'reset' "
                     "(averaging works with SGD and Nesterov solvers)")


@dataclass(frozen=True, kw_only=True)
class OuterConfig:
    """How the driver turns the K workers' results into the next weights.

    Attributes:
        name: ``average`` (SparkNet: the mean of the workers' weights), ``weighted`` (mean
            weighted by each worker's number of training samples), or ``nesterov`` (a Nesterov
            momentum step on the averaged change, as in DiLoCo).
        lr: outer learning rate (``nesterov`` only; ``average`` is lr 1, momentum 0).
        momentum: outer momentum (``nesterov`` only).
        compression: how workers encode the change they send back: ``none`` (float32),
            ``bf16`` or ``int8`` (per-chunk scale); the driver sums in float32.
    """

    name: OuterName = "average"
    lr: float = 0.7
    momentum: float = 0.9
    compression: Compression = "none"

    def __post_init__(self) -> None:
        _require(self.name in ("average", "weighted", "nesterov"), "outer.name", self.name,
                 "use 'average', 'weighted' or 'nesterov'")
        _require(math.isfinite(self.lr) and self.lr > 0, "outer.lr", self.lr,
                 "use a positive outer learning rate such as 0.7")
        _require(0 <= self.momentum < 1, "outer.momentum", self.momentum,
                 "use an outer momentum in [0, 1), e.g. 0.9")
        _require(self.compression in ("none", "bf16", "int8"), "outer.compression",
                 self.compression, "use 'none', 'bf16' or 'int8'")


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """The shape of SparkNet's parallel SGD.

    Attributes:
        num_workers: K, the number of data partitions trained in parallel each round.
        tau: local SGD steps per worker per round, or ``auto`` (the default): measure step
            time and round overhead in the first rounds, then keep overhead <= 5% of a round
            (``sparknet.engine.auto_tau``); the decisions are recorded and replayed.
        batch_size: b, the mini-batch size of one local step.
        rounds: number of rounds to train (each round processes K * tau * b samples).
        eval_every: evaluate on the test set every this many rounds (0: only at the end).
        device: ``cpu``, ``cuda`` (the GPU Spark assigned to the task) or ``auto``.
        threads_per_worker: PyTorch threads in each worker (1 is fastest for small CNNs).
        tree_fan_in: the driver combines at most this many partial sums per round; larger
            K is first summed on the executors in a tree.
        eval_batch_size: batch size of distributed evaluation.
        on_non_finite: a NaN/inf loss or update either stops training (``stop``) or the
            round's update is skipped (``skip``).
    """

    num_workers: int = 2
    tau: int | Literal["auto"] = "auto"
    batch_size: int = 64
    rounds: int = 20
    eval_every: int = 5
    device: Device = "cpu"
    threads_per_worker: int = 1
    tree_fan_in: int = 4
    eval_batch_size: int = 1000
    on_non_finite: OnNonFinite = "stop"

    def __post_init__(self) -> None:
        _require(isinstance(self.num_workers, int) and self.num_workers >= 1,
                 "num_workers", self.num_workers, "use K >= 1 (e.g. --num-workers 2)")
        _require(self.tau == "auto" or (isinstance(self.tau, int) and self.tau >= 1), "tau",
                 self.tau, "use tau >= 1 local steps per round (e.g. --tau 50) or 'auto'")
        _require(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size",
                 self.batch_size, "use a batch size >= 1 (e.g. --batch-size 64)")
        _require(isinstance(self.rounds, int) and self.rounds >= 1, "rounds", self.rounds,
                 "train for at least one round")
        _require(self.eval_every >= 0, "eval_every", self.eval_every,
                 "use 0 (evaluate at the end only) or a positive number of rounds")
        _require(self.device in ("cpu", "cuda", "auto"), "device", self.device,
                 "use 'cpu', 'cuda' or 'auto'")
        _require(self.threads_per_worker >= 1, "threads_per_worker", self.threads_per_worker,
                 "use at least one thread")
        _require(self.tree_fan_in >= 2, "tree_fan_in", self.tree_fan_in, "use a fan-in >= 2")
        _require(self.eval_batch_size >= 1, "eval_batch_size", self.eval_batch_size,
                 "use a batch size >= 1")
        _require(self.on_non_finite in ("stop", "skip"), "on_non_finite", self.on_non_finite,
                 "use 'stop' or 'skip'")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that determines a training run; same config + seed gives the same weights.

    Attributes:
        model: built-in model name (``lenet``, ``cnn``) or a factory ``package.module:function``.
        seed: seeds initial weights, data order and dropout.
        engine, optimizer, outer: the component configs.
        checkpoint_every: write a checkpoint every this many rounds (0: only at the end).
    """

    model: str = "lenet"
    seed: int = 0
    engine: EngineConfig = field(default_factory=EngineConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    outer: OuterConfig = field(default_factory=OuterConfig)
    checkpoint_every: int = 10

    def __post_init__(self) -> None:
        _require(isinstance(self.model, str) and bool(self.model), "model", self.model,
                 "name a built-in model (lenet, cnn) or a factory 'package.module:function'")
        _require(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed,
                 "use a non-negative integer seed")
        _require(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every,
                 "use 0 (only at the end) or a positive number of rounds")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Builds a config from nested plain data (JSON, TOML); unknown keys are errors."""
        parts = {"engine": EngineConfig, "optimizer": OptimizerConfig, "outer": OuterConfig}
        kwargs: dict[str, Any] = {}
        top_fields = {f.name for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key not in top_fields:
                raise ConfigError(f"unknown configuration key {key!r}: known keys are "
                                  f"{sorted(top_fields)}")
            if key in parts:
                if not isinstance(value, dict):
                    raise ConfigError(f"{key} must be a table of settings, got {value!r}")
                kwargs[key] = _build(parts[key], value, prefix=key)
            else:
                kwargs[key] = value
        return cls(**kwargs)


def _build(kind: type[Any], values: dict[str, Any], *, prefix: str) -> Any:
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting {prefix}.{unknown[0]}: known settings of "
                          f"[{prefix}] are {sorted(known)}")
    return kind(**values)
