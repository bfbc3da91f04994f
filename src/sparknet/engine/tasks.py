"""What a Spark task runs on an executor, shared by the RDD and the DataFrame runner.

Each task takes its network from the worker's cache, runs the pure worker functions of
``engine.local_steps`` on the device Spark gave it, and a failure after Spark's retries becomes
one ``TrainingError`` line that keeps the worker's exception as its cause.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import torch

from sparknet.data.shards import ShardRows
from sparknet.engine.local_steps import (
    LocalPlan,
    RoundState,
    WorkerResult,
    evaluate_shard,
    run_local_steps,
)
from sparknet.engine.model_cache import cached_network
from sparknet.engine.overlap import CarryStore
from sparknet.errors import TrainingError
from sparknet.models.kinds import InputPrep, ModelKind
from sparknet.models.objectives import MULTICLASS, Objective


def task_device(preference: str) -> torch.device:
    """The device for this task: the GPU Spark assigned to it, if asked for and present."""
    return pick_device(preference, assigned=assigned_gpu(),
                       cuda_devices=torch.cuda.device_count() if torch.cuda.is_available() else 0)


def assigned_gpu() -> str | None:
    """The first GPU address Spark's scheduler gave this task (``spark.task.resource.gpu
    .amount``), or None outside a task or when no GPUs are scheduled."""
    from pyspark import TaskContext

    context = TaskContext.get()
    gpus = context.resources().get("gpu") if context is not None else None
    return gpus.addresses[0] if gpus is not None and gpus.addresses else None


def pick_device(preference: str, *, assigned: str | None, cuda_devices: int) -> torch.device:
    """The rule, given what Spark assigned and how many CUDA devices this process sees.

    ``cpu``: the CPU. With CUDA: ``cuda:ADDRESS`` for the address Spark assigned (an address
    is the device's index as this executor sees it), else the current CUDA device. Without
    CUDA: ``auto`` falls back to the CPU (an assigned address is then ignored) and ``cuda``
    is one error line.
    """
    if preference == "cpu":
        return torch.device("cpu")
    if cuda_devices > 0:
        if assigned is None:
            return torch.device("cuda")
        if not assigned.isdigit() or int(assigned) >= cuda_devices:
            raise TrainingError(f"Spark assigned GPU {assigned!r} to this task but this "
                                f"executor sees {cuda_devices} CUDA device(s) (0 to "
                                f"{cuda_devices - 1}): make the GPU discovery script report "
                                "the indices CUDA uses on the executor (CUDA_VISIBLE_DEVICES)")
        return torch.device(f"cuda:{assigned}")
    if preference == "cuda":
        given = f" (Spark assigned it GPU {assigned!r})" if assigned is not None else ""
        raise TrainingError(f"device 'cuda' was asked for but this executor has no CUDA "
                            f"device{given}: use --device auto or cpu, or give executors GPUs "
                            "and a CUDA build of PyTorch")
    return torch.device("cpu")


def train_shard(model: ModelKind, index: int, shard: ShardRows, state: RoundState,
                plan: LocalPlan, device: str) -> WorkerResult:
    """One worker's round: tau local steps on its shard from the broadcast state."""
    network = cached_network(model)
    network.weights_token = None  # training changes the weights in place
    return run_local_steps(network.module, network.layout, shard, state, plan,
                           partition=index, device=task_device(device))


def executor_carry_store(token: str) -> CarryStore:
    """Overlapped rounds' carries on this executor, in its Spark files folder (removed with
    the application)."""
    try:
        from pyspark import SparkFiles

        root = Path(SparkFiles.getRootDirectory())
    except Exception:  # outside a Spark task
        root = Path(tempfile.gettempdir())
    return CarryStore(root / "sparknet-carry", token)


def evaluate_one(model: ModelKind, shard: ShardRows, state: RoundState, prep: InputPrep, *,
                 device: str, batch_size: int, threads: int,
                 objective: Objective = MULTICLASS) -> tuple[float, int, int]:
    """(sum of losses, number correct, examples) of one test shard."""
    network = cached_network(model)
    network.weights_token = None
    return evaluate_shard(network.module, network.layout, shard, state, prep,
                          batch_size=batch_size, device=task_device(device), threads=threads,
                          objective=objective)


def worker_error_summary(exc: BaseException) -> str:
    """The last exception line of a worker's Python traceback inside a Spark error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    grpc = [line for line in lines if line.startswith("details = ")]
    if grpc:  # a Spark Connect call the server or the client refused
        return grpc[0].removeprefix("details = ").strip('"')[:500]
    candidates = [line for line in lines
                  if ("Error" in line or "Exception" in line) and not line.startswith("at ")
                  and "Traceback" not in line and not line.startswith("File ")]
    for line in reversed(candidates):
        if not line.startswith(("org.apache", "py4j", "pyspark.errors", "An exception")):
            return line[:500]
    return (lines[-1] if lines else type(exc).__name__)[:500]


def retry_policy(master: str | None, max_failures: str | None) -> str:
    """How Spark retried a failed task, so that an error line says what really happened.

    ``local[K]`` never retries (Spark ignores spark.task.maxFailures there); ``local[K,F]``
    makes F attempts; other masters make spark.task.maxFailures attempts (default 4).
    """
    if master is None:
        return "after Spark's retries (spark.task.maxFailures)"
    local = re.fullmatch(r"local(?:\[(?:\*|\d+)(?:,\s*(\d+))?\])?", master)
    attempts = int(local.group(1) or 1) if local else int(max_failures or 4)
    if attempts <= 1:
        fix = (f" (master {master} does not retry tasks; local[K,4] does)" if local else
               " (spark.task.maxFailures=1)")
        return f"on its first attempt, with no retry{fix}"
    return f"in all {attempts} attempts of a task"


# What a Spark Connect client's error says when the server went away (killed, restarted,
# unreachable, silent) and the client's retries ran out: no task failed, so no worker is to
# blame. DEADLINE_EXCEEDED: a call the server left unanswered for the start timeout.
_SERVER_LOST = ("failed to connect to all addresses", "StatusCode.UNAVAILABLE",
                "RETRIES_EXCEEDED", "StatusCode.DEADLINE_EXCEEDED")


def server_lost(what: str, exc: BaseException) -> TrainingError | None:
    """The one line for ``exc`` if it says the Spark Connect server stopped answering."""
    if not any(sign in str(exc) for sign in _SERVER_LOST):
        return None
    return TrainingError(f"{what}: the Spark Connect server stopped answering "
                         f"({worker_error_summary(exc)}); restart it (or raise --start-timeout "
                         "if it is only slow), then continue with --resume.")


def preparing_failed(exc: BaseException, retries: str) -> TrainingError:
    return server_lost("preparing the workers failed", exc) or TrainingError(
        "preparing the workers (loading shards, building the network) failed "
        f"{retries}: {worker_error_summary(exc)}")


def round_failed(round_index: int, exc: BaseException, retries: str) -> TrainingError:
    return server_lost(f"round {round_index} failed", exc) or TrainingError(
        f"round {round_index} failed {retries}; the worker's error: "
        f"{worker_error_summary(exc)}.")


def evaluation_failed(exc: BaseException, retries: str) -> TrainingError:
    return server_lost("evaluation failed", exc) or TrainingError(
        f"evaluation failed {retries}; the worker's error: {worker_error_summary(exc)}.")
