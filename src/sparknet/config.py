"""Training configuration: one frozen, keyword-only dataclass per component.

Configs are plain data: they can cross to Spark executors and be written to JSON, and reading
one back never opens another file (paths are checked when a run starts). Every field is
declared with ``setting``: its documentation there is the only copy, and the CLI flags, the
Spark ML Params of ``SparkNetEstimator`` and their help texts are derived from it
(``sparknet.settings``). Every dataclass validates itself in ``__post_init__``; errors name the
field, the value and the fix.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from sparknet.errors import ConfigError, DataError

OptimizerName = Literal["sgd", "adam", "caffe"]
MomentumPolicy = Literal["auto", "reset", "average"]
LrSchedule = Literal["constant", "step", "cosine"]
OuterName = Literal["average", "weighted", "nesterov"]
# tau = "epoch": one pass over a worker's shard per round, but rounds of at most this many
# steps, so that large data still syncs, evaluates and checkpoints often.
EPOCH_TAU_CAP = 100
Compression = Literal["none", "bf16", "int8"]
Device = Literal["cpu", "cuda", "auto"]
OnNonFinite = Literal["stop", "skip"]
Monitor = Literal["loss", "accuracy"]
Precision = Literal["fp32", "tf32", "bf16"]
Overlap = Literal["off", "eager", "decoupled"]


def setting(default: Any = dataclasses.MISSING, doc: str = "", *, flag: str | None = None,
            param: str | None = None, metavar: str | None = None,
            reference: str | None = None,
            default_factory: Any = dataclasses.MISSING) -> Any:
    """A config field with its one documentation string.

    ``flag`` and ``param`` name the CLI flag and the Spark ML Param when the defaults (the
    field name in kebab-case and camelCase) do not fit. ``reference``: the field may name
    code (``package.module:function``) and what kind (``network``, ``loss``); a value read
    from a file goes through ``sparknet.models.registry.check_file_references``.
    """
    metadata = {"doc": doc, "flag": flag, "param": param, "metavar": metavar,
                "reference": reference}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _require(ok: bool, field_name: str, value: object, fix: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}={value!r} is invalid: {fix}")


class CombinationError(ConfigError):
    """Two settings that do not go together (each may be fine alone)."""


def _require_together(ok: bool, field_name: str, value: object, fix: str) -> None:
    if not ok:
        raise CombinationError(f"{field_name}={value!r} is invalid: {fix}")


def _type_ok(value: object, hint: Any) -> bool:
    """Whether ``value`` is of the annotated type; bool is not an int here, int is a float."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return any(value == choice and type(value) is type(choice)
                   for choice in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return type(value) in (int, float)
    if hint in (int, str, bool):
        return type(value) is hint
    return isinstance(value, hint) if isinstance(hint, type) else True


def type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " or ".join(repr(c) for c in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(option) for option in typing.get_args(hint))
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def check_field_types(instance: Any, prefix: str) -> None:
    """Every field holds a value of its annotated type (checked before any other rule)."""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if not _type_ok(value, hints[f.name]):
            raise ConfigError(f"{prefix}{f.name}={value!r} is invalid: expected "
                              f"{type_name(hints[f.name])}")


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """The optimizer each worker runs for its tau local steps."""

    name: OptimizerName = setting(
        "sgd", "local optimizer: sgd (PyTorch's SGD, optionally with momentum/Nesterov), adam, "
        "or caffe (the Caffe solver in caffe_solver, with Caffe's update rule, lr_policy at "
        "each worker's global iteration and iter_size; lr, momentum, nesterov and weight_decay "
        "are then unused)", flag="--optimizer", param="optimizer")
    lr: float = setting(0.01, "learning rate of the local steps", param="learningRate")
    momentum: float = setting(0.9, "SGD momentum (0 disables it)")
    nesterov: bool = setting(False, "use Nesterov momentum in the local SGD steps")
    weight_decay: float = setting(0.0, "L2 penalty added to the gradient")
    momentum_policy: MomentumPolicy = setting(
        "auto", "each worker's optimizer state between rounds: reset starts every round from "
        "zero state (nothing extra is sent); average averages it across workers like the "
        "weights (doubles the traffic); auto: average where that state is one momentum "
        "buffer (SGD with momentum, Caffe's SGD and Nesterov solvers), else reset, and reset "
        "in overlapped rounds")
    lr_schedule: LrSchedule = setting(
        "constant", "learning rate over each worker's local steps (sgd and adam): constant, "
        "step (times lr_gamma every lr_decay_steps steps) or cosine (from lr down to 0 over "
        "lr_decay_steps steps, e.g. rounds x tau); counted in local steps since the start of "
        "training, the same on every worker")
    lr_decay_steps: int = setting(
        0, "local steps per decay (step) or of the whole anneal (cosine); needed by both")
    lr_gamma: float = setting(0.1, "the step schedule's factor per lr_decay_steps, in (0, 1]")
    lr_warmup_steps: int = setting(
        0, "linear warm-up: the first this many local steps go from lr/N up to the scheduled "
        "rate (0: none); works with any lr_schedule")
    caffe_solver: str | None = setting(
        None, "the Caffe solver definition (solver.prototxt text) when optimizer is caffe; "
        "the CLI flag takes the file and stores its text, so a run never reads it again",
        metavar="SOLVER")
    caffe_snapshot: str | None = setting(
        None, "a Caffe solver snapshot (.solverstate) to start from, as 'caffe train "
        "--snapshot': its caffemodel's weights (learned_net), its iteration (the lr_policy and "
        "the CLI's rounds go on from there) and its history (every worker's solver state in "
        "the first round, carried on averaged with momentum_policy average); needs optimizer "
        "caffe; the file must stay readable on every executor while the run runs",
        metavar="SOLVERSTATE")

    def __post_init__(self) -> None:
        check_field_types(self, "optimizer.")
        _require(math.isfinite(self.lr) and self.lr > 0, "optimizer.lr", self.lr,
                 "use a positive learning rate such as 0.01")
        _require(0 <= self.momentum < 1, "optimizer.momentum", self.momentum,
                 "use a momentum in [0, 1), e.g. 0.9")
        _require_together(not (self.nesterov and self.momentum == 0), "optimizer.nesterov",
                          self.nesterov,
                 "Nesterov needs momentum > 0")
        _require(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
                 "optimizer.weight_decay", self.weight_decay, "use a non-negative weight decay")
        _require(self.lr_decay_steps >= 0, "optimizer.lr_decay_steps", self.lr_decay_steps,
                 "use a positive number of local steps, e.g. 1000")
        _require(math.isfinite(self.lr_gamma) and 0 < self.lr_gamma <= 1,
                 "optimizer.lr_gamma", self.lr_gamma, "use a factor in (0, 1], e.g. 0.1")
        _require(self.lr_warmup_steps >= 0, "optimizer.lr_warmup_steps", self.lr_warmup_steps,
                 "use 0 (no warm-up) or a positive number of local steps")
        _require_together(self.lr_schedule == "constant" or self.lr_decay_steps > 0,
                          "optimizer.lr_decay_steps", self.lr_decay_steps,
                          f"lr_schedule {self.lr_schedule!r} needs lr_decay_steps > 0 (e.g. "
                          "rounds x tau for cosine)")
        _require_together((self.name == "caffe") == (self.caffe_solver is not None),
                 "optimizer.caffe_solver", _short(self.caffe_solver),
                 "give a solver exactly when optimizer.name is 'caffe' "
                 "(sparknet train --caffe-solver FILE)")
        _require_together(self.caffe_snapshot is None or self.name == "caffe",
                          "optimizer.caffe_snapshot", self.caffe_snapshot,
                          "a Caffe snapshot continues a Caffe solver: give the solver too "
                          "(sparknet train --caffe-solver FILE --caffe-snapshot STATE)")
        _require(self.caffe_snapshot is None or bool(self.caffe_snapshot),
                 "optimizer.caffe_snapshot", self.caffe_snapshot,
                 "give the path of a .solverstate, or leave it unset")


def _json_object(text: str) -> bool:
    import json

    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _short(text: str | None) -> str | None:
    return text if text is None or len(text) < 60 else text[:57] + "..."


def scheduled_lr(config: OptimizerConfig, step: int) -> float:
    """The local learning rate of local step ``step`` (0-based, counted since training began):
    ``lr_schedule`` times the linear warm-up. Pure: every worker, the simulator and the
    single-process reference compute the same rates."""
    rate = config.lr
    if config.lr_schedule == "step":
        rate *= config.lr_gamma ** (step // config.lr_decay_steps)
    elif config.lr_schedule == "cosine":
        done = min(step, config.lr_decay_steps) / config.lr_decay_steps
        rate *= 0.5 * (1.0 + math.cos(math.pi * done))
    if step < config.lr_warmup_steps:
        rate *= (step + 1) / config.lr_warmup_steps
    return rate


@dataclass(frozen=True, kw_only=True)
class OuterConfig:
    """How the driver turns the K workers' results into the next weights."""

    name: OuterName = setting(
        "nesterov", "outer optimizer on the driver: average (SparkNet: the mean of the "
        "workers' weights), weighted (mean weighted by each worker's number of training "
        "samples) or nesterov (a Nesterov momentum step on the averaged change, as in DiLoCo)",
        flag="--outer", param="outerOptimizer")
    lr: float = setting(0.7, "outer learning rate (nesterov only)", flag="--outer-lr",
                        param="outerLearningRate")
    momentum: float = setting(0.9, "outer momentum (nesterov only)", flag="--outer-momentum",
                              param="outerMomentum")
    compression: Compression = setting(
        "none", "how workers encode the change they send back: none (float32), bf16, or int8 "
        "with a scale per chunk; the driver sums in float32")

    def __post_init__(self) -> None:
        check_field_types(self, "outer.")
        _require(math.isfinite(self.lr) and self.lr > 0, "outer.lr", self.lr,
                 "use a positive outer learning rate such as 0.7")
        _require(0 <= self.momentum < 1, "outer.momentum", self.momentum,
                 "use an outer momentum in [0, 1), e.g. 0.9")


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """The shape of SparkNet's parallel SGD."""

    num_workers: int = setting(2, "K, the number of data partitions trained in parallel each "
                                  "round")
    tau: int | Literal["epoch", "auto"] = setting(
        "epoch", "local SGD steps per worker per round; epoch: one pass over each worker's "
        f"shard, at most {EPOCH_TAU_CAP} steps (worked out from the row count alone, so the "
        "same on any machine); auto: measure step time and round overhead in the first "
        "rounds, then keep the overhead <= 5% of a round (faster on a slow network, but the "
        "steps, and so the weights, depend on the machine's load; the decisions are recorded "
        "and can be replayed)")
    batch_size: int = setting(64, "mini-batch size of one local step")
    rounds: int = setting(20, "number of rounds to train (each processes K * tau * batch_size "
                              "samples)")
    eval_every: int = setting(5, "evaluate on the test set every this many rounds (0: only at "
                                 "the end)")
    device: Device = setting("cpu", "where workers run: cpu, cuda (the GPU Spark assigned to "
                                    "the task) or auto")
    threads_per_worker: int = setting(1, "PyTorch threads in each worker (1 is fastest for "
                                         "small CNNs)")
    precision: Precision = setting(
        "fp32", "arithmetic of the local steps: fp32 (exact float32, TF32 off), tf32 (TF32 "
        "matmuls and convolutions on NVIDIA GPUs; the same as fp32 on a CPU) or bf16 "
        "(bfloat16 autocast of the forward pass and loss); see docs/gpu.md")
    channels_last: bool = setting(
        False, "keep the network's 4-D weights and inputs channels-last (NHWC) in the local "
               "steps: faster convolutions on recent GPUs under tf32/bf16, not on a CPU")
    tree_fan_in: int = setting(4, "the driver combines at most this many partial sums per "
                                  "round; larger K is first summed on the executors in a tree")
    eval_batch_size: int = setting(1000, "batch size of distributed evaluation")
    decode_threads: int = setting(
        2, "threads per worker that decode a batch of streamed PNG/JPEG images (--images, "
           "streamed binary columns)")
    on_non_finite: OnNonFinite = setting(
        "stop", "a NaN/inf loss or update stops training (stop) or the round's update is "
                "skipped (skip)")
    patience: int = setting(
        0, "early stopping: stop after this many evaluations in a row without a better "
           "monitored metric, and keep the best evaluated weights (0: off; needs validation "
           "data and eval_every > 0)")
    monitor: Monitor = setting(
        "loss", "the validation metric early stopping watches: loss (lower is better) or "
                "accuracy (higher is better; classifiers only)")
    overlap: Overlap = setting(
        "off", "off: synchronous rounds (SparkNet's); decoupled or eager: overlapped rounds, "
               "where the next round's job waits queued behind the running one so workers "
               "never wait for Spark's per-job floor, and the average is applied one round "
               "late; each worker starts from it plus its own last change, in full "
               "(decoupled, CoCoD-SGD) or as its 1/K share (eager updates) (needs a fixed tau "
               "and outer average; see docs/engine.md)")

    def __post_init__(self) -> None:
        check_field_types(self, "")
        _require(self.num_workers >= 1, "num_workers", self.num_workers,
                 "use K >= 1 (e.g. --num-workers 2)")
        _require(not isinstance(self.tau, int) or self.tau >= 1, "tau", self.tau,
                 "use tau >= 1 local steps per round (e.g. --tau 50), 'epoch' or 'auto'")
        _require(self.batch_size >= 1, "batch_size", self.batch_size,
                 "use a batch size >= 1 (e.g. --batch-size 64)")
        _require(self.rounds >= 1, "rounds", self.rounds, "train for at least one round")
        _require(self.eval_every >= 0, "eval_every", self.eval_every,
                 "use 0 (evaluate at the end only) or a positive number of rounds")
        _require(self.threads_per_worker >= 1, "threads_per_worker", self.threads_per_worker,
                 "use at least one thread")
        _require(self.tree_fan_in >= 2, "tree_fan_in", self.tree_fan_in, "use a fan-in >= 2")
        _require(self.eval_batch_size >= 1, "eval_batch_size", self.eval_batch_size,
                 "use a batch size >= 1")
        _require(self.decode_threads >= 1, "decode_threads", self.decode_threads,
                 "use at least one decoding thread")
        _require(self.patience >= 0, "patience", self.patience,
                 "use 0 (no early stopping) or a positive number of evaluations")
        _require_together(self.patience == 0 or self.eval_every > 0, "patience", self.patience,
                 "early stopping needs evaluations during training: set eval_every > 0")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that determines a training run; same config + seed gives the same weights."""

    model: str = setting(
        "lenet", "the network: a built-in name (lenet, cnn; alexnet, caffenet, googlenet, "
        "resnet50 for RGB images), NAME#N for N classes, a factory "
        "'package.module:function' returning an nn.Module, or "
        "'caffe:NET.prototxt[@WEIGHTS.caffemodel][#C,H,W]'", param="network",
        reference="network")
    model_args: str | None = setting(
        None, "keyword arguments for a factory network, as a JSON object, e.g. "
        "'{\"hidden\": 64}' (the factory is called as function(**args))",
        flag="--model-args", param="networkArgs", metavar="JSON")
    objective: str = setting(
        "multiclass", "what the network is trained for: multiclass (softmax cross-entropy, "
        "labels are class indices), binary (sigmoid cross-entropy on one output, labels 0/1), "
        "multilabel (sigmoid cross-entropy per output, labels are 0/1 vectors), mse, l1 or "
        "huber (regression on a scalar or vector target), or a loss factory "
        "'package.module:function' returning loss(outputs, targets)", reference="loss")
    seed: int = setting(0, "seeds the initial weights, the data order and dropout")
    engine: EngineConfig = setting(default_factory=EngineConfig)
    optimizer: OptimizerConfig = setting(default_factory=OptimizerConfig)
    outer: OuterConfig = setting(default_factory=OuterConfig)
    checkpoint_every: int = setting(10, "write a checkpoint every this many rounds (0: only "
                                        "at the end)")

    def __post_init__(self) -> None:
        check_field_types(self, "")
        _require(bool(self.model), "model", self.model,
                 "name a built-in model (lenet, cnn) or a factory 'package.module:function'")
        _require(0 <= self.seed < 2**63, "seed", self.seed,
                 "use an integer seed in [0, 2**63), e.g. --seed 0")
        # Which names exist is sparknet.models.objectives' to say (resolve_objective, run
        # before any job); here only the form is checked.
        _require(bool(self.objective) and not self.objective.isspace(), "objective",
                 self.objective, "name a built-in objective (e.g. multiclass) or a loss "
                 "factory 'package.module:function'")
        _require(self.model_args is None or _json_object(self.model_args), "model_args",
                 self.model_args, "give a JSON object of keyword arguments, e.g. "
                 "'{\"hidden\": 64}'")
        _require_together(self.model_args is None or ":" in self.model, "model_args",
                          self.model_args,
                 "keyword arguments are for a factory network 'package.module:function'")
        _require(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every,
                 "use 0 (only at the end) or a positive number of rounds")
        if self.engine.overlap != "off":
            overlap = self.engine.overlap
            _require_together(
                self.engine.tau != "auto", "tau", self.engine.tau,
                f"overlap={overlap} needs a fixed tau (e.g. --tau 50): auto-tau sizes rounds to "
                "hide the per-job floor that overlapped rounds already hide")
            _require_together(
                self.outer.name == "average", "outer.name", self.outer.name,
                f"overlap={overlap} applies the plain average; use --outer average or "
                "--overlap off")
            _require_together(
                self.optimizer.momentum_policy != "average", "optimizer.momentum_policy",
                self.optimizer.momentum_policy,
                f"overlap={overlap} sends no optimizer state; use momentum_policy reset or "
                "--overlap off")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Builds a config from nested plain data (JSON, TOML); unknown keys are errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"a configuration must be a table of settings, got {data!r}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            part = SECTIONS.get(key)
            if part is not None:
                if not isinstance(value, dict):
                    raise ConfigError(f"{key} must be a table of settings, got {value!r}")
                kwargs[key] = build_section(part, value, prefix=key)
            else:
                kwargs[key] = value
        return build_section(cls, kwargs, prefix="")


def config_from_file(data: Any, *, origin: str) -> TrainConfig:
    """A configuration read back from a run's file; anything invalid names the file."""
    try:
        return TrainConfig.from_dict(data)
    except ConfigError as exc:
        raise DataError(f"{origin} holds no valid configuration ({exc}): the run directory "
                        "was changed or is corrupt") from None


def first_difference(a: dict[str, Any], b: dict[str, Any], *, skip: Collection[str] = (),
                     prefix: str = "") -> str | None:
    """The first dotted key whose value differs between two nested settings tables."""
    for key in sorted(set(a) | set(b)):
        dotted = f"{prefix}{key}"
        if dotted in skip:
            continue
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            found = first_difference(left, right, skip=skip, prefix=f"{dotted}.")
            if found is not None:
                return found
        elif left != right:
            return dotted
    return None


SECTIONS: dict[str, type[Any]] = {"engine": EngineConfig, "optimizer": OptimizerConfig,
                                  "outer": OuterConfig}


def build_section(kind: type[Any], values: dict[str, Any], *, prefix: str) -> Any:
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown and not prefix:
        raise ConfigError(f"unknown configuration key {unknown[0]!r}: known keys are "
                          f"{sorted(known)}")
    if unknown:
        raise ConfigError(f"unknown setting {prefix}.{unknown[0]}: known settings of "
                          f"[{prefix}] are {sorted(known)}")
    return kind(**values)
