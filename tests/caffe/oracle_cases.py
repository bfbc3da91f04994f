"""One Caffe comparison case, as the oracle fuzzer (tests/caffe_oracle) and the committed
regression cases (tests/data/caffe_regressions) both run it.

A net case is a prototxt, a phase and arrays named as the oracle runner
(scripts/caffe_oracle_runner.py) reads them: ``input:<blob>``, ``param:<layer>:<i>``,
``top_diff:<blob>``; a case of several passes in a row (``passes``, what LSTM and RNN carry
between them) has them per pass, ``pass<k>:input:<blob>``, and with ``lr`` a step
``w -= lr * grad`` after each pass. A solver case adds a solver prototxt, MemoryData
``data``/``label`` and an iteration count. Results use the runner's keys (``blob:``,
``diff:``, ``param:``, ``param_diff:``, ``iter<k>:param:``, ``pass<k>:...``), so
sparknet's and Caffe's results compare key by key.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sparknet.caffe import CaffeNet, build_net, make_optimizer, parse_net_text, parse_solver_text

FORWARD_RTOL = 1e-5  # the README's rule for forward blobs
BACKWARD_RTOL = 1e-4  # gradients: float32 sums in another order, relative to the largest
SOLVER_RTOL = 1e-4  # parameters after a few iterations (same accumulation effect)

Arrays = dict[str, np.ndarray]


@dataclass(kw_only=True)
class NetCase:
    name: str
    layer_type: str
    prototxt: str
    phase: str = "TEST"
    backward: bool = True
    arrays: Arrays = field(default_factory=dict)
    note: str = ""
    passes: int = 1
    lr: float = 0.0


@dataclass(kw_only=True)
class SolverCase:
    name: str
    solver_type: str
    lr_policy: str
    solver: str  # solver prototxt text; its net: is "net.prototxt"
    net: str
    iterations: int
    arrays: Arrays = field(default_factory=dict)  # data, label, param:<layer>:<i>
    note: str = ""


def mismatch(ours: np.ndarray, caffe: np.ndarray, what: str, *, rtol: float = FORWARD_RTOL
             ) -> str | None:
    """None when ``ours`` matches Caffe: max |ours - caffe| <= rtol * max(1, max |caffe|),
    with NaN and infinities where Caffe has them; otherwise one line saying how it differs."""
    ours = np.asarray(ours)
    if ours.shape != caffe.shape:
        return f"{what}: shape {ours.shape} != Caffe's {caffe.shape}"
    ours64, caffe64 = ours.astype(np.float64), caffe.astype(np.float64)
    special = ~np.isfinite(caffe64)
    if (special != ~np.isfinite(ours64)).any() or (
            ours64[special] != caffe64[special])[~np.isnan(caffe64[special])].any():
        return f"{what}: NaN/inf at other positions than Caffe's"
    finite = ~special
    bound = rtol * max(1.0, float(np.abs(caffe64[finite]).max(initial=0.0)))
    err = float(np.abs(ours64[finite] - caffe64[finite]).max(initial=0.0))
    return None if err <= bound else f"{what}: max error {err:.3g} > {bound:.3g}"


def _inputs(arrays: Arrays, backward: bool) -> dict[str, torch.Tensor]:
    return {k.removeprefix("input:"): torch.tensor(v, requires_grad=backward)
            for k, v in arrays.items() if k.startswith("input:")}


def params_by_layer(arrays: Arrays, prefix: str = "param:") -> dict[str, list[np.ndarray]]:
    """``{layer: [blob, ...]}`` from ``param:<layer>:<i>`` keys, in blob order."""
    found: dict[str, dict[int, np.ndarray]] = {}
    for key, value in arrays.items():
        if key.startswith(prefix):
            layer, index = key.removeprefix(prefix).rsplit(":", 1)
            found.setdefault(layer, {})[int(index)] = value
    return {layer: [blobs[i] for i in sorted(blobs)] for layer, blobs in found.items()}


def _flat_params(net: torch.nn.Module, prefix: str = "") -> Arrays:
    return {f"{prefix}param:{layer}:{i}": b for layer, blobs in net.caffe_blobs().items()
            for i, b in enumerate(blobs)}


def run_sparknet_net(case: NetCase) -> Arrays:
    """sparknet's forward (and backward) of a net case, keyed as the oracle's results; run in
    a folder of its own, from which the files HDF5Output layers wrote are read back."""
    with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder):
        out = _run_net(case)
        for layer in parse_net_text(case.prototxt).layer:
            name = layer.hdf5_output_param.file_name
            if layer.type == "HDF5Output" and Path(name).is_file():
                out.update(_datasets(name))
    return out


def _datasets(name: str) -> Arrays:
    import h5py

    with h5py.File(name, "r") as file:
        return {f"file:{name}:{dataset}": file[dataset][...] for dataset in file}


def _run_net(case: NetCase) -> Arrays:
    net = build_net(parse_net_text(case.prototxt, source=case.name), phase=case.phase,
                    weights=params_by_layer(case.arrays) or None)
    if case.passes == 1:
        out = _one_pass(net, case.arrays, "", case.backward)
        out.update(_flat_params(net))
        return out
    out = {}
    for k in range(1, case.passes + 1):
        out.update(_one_pass(net, case.arrays, f"pass{k}:", case.backward))
        if case.lr:
            with torch.no_grad():
                for param in net.parameters():
                    if param.grad is not None:
                        param -= np.float32(case.lr) * param.grad
            out.update(_flat_params(net, f"pass{k}:"))
    return out


def _one_pass(net: CaffeNet, arrays: Arrays, prefix: str, backward: bool) -> Arrays:
    """One forward (and backward) pass on the arrays under ``prefix``; results under it."""
    inputs = _inputs({k.removeprefix(prefix): v for k, v in arrays.items()
                      if k.startswith(f"{prefix}input:")}, backward)
    net.zero_grad(set_to_none=True)
    blobs = net.run(dict(inputs))
    out = {f"{prefix}blob:{k}": v.detach().numpy().copy() for k, v in blobs.items()}
    if backward:
        terms = [w * blobs[name].sum() for name, w in net.loss_weights.items() if name in blobs]
        terms += [(blobs[k.removeprefix(f"{prefix}top_diff:")] * torch.from_numpy(v)).sum()
                  for k, v in arrays.items() if k.startswith(f"{prefix}top_diff:")]
        if terms:
            torch.stack(terms).sum().backward()
        for name, tensor in inputs.items():
            grad = tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)
            out[f"{prefix}diff:{name}"] = grad.numpy().copy()
        for module in net.layers.values():
            for i, blob in enumerate(getattr(module, "blobs", [])):
                owner = getattr(module.blobs, "parameter", None)  # (an older src lacks it)
                grad = owner(i).grad if owner else blob.grad  # PERMISSIVE: the owner's
                grad = grad.reshape(blob.shape) if grad is not None else torch.zeros_like(blob)
                out[f"{prefix}param_diff:{module.caffe_name}:{i}"] = grad.detach().numpy().copy()
    return out


def compare_net(case: NetCase, ours: Arrays, caffe: Arrays) -> list[str]:
    """Every way sparknet's results differ from Caffe's: each top blob (and parameters after
    the forward pass), and with backward the input and parameter gradients."""
    problems = []
    inputs = {k.split("input:", 1)[1] for k in case.arrays if "input:" in k}
    if "force_backward: true" not in case.prototxt:
        inputs = set()  # Caffe computes no gradient for inputs without force_backward
    for key, value in sorted(caffe.items()):
        plain = key.split(":", 1)[1] if key.startswith("pass") else key  # pass<k>:...
        kind = plain.split(":", 1)[0]
        if kind == "diff" and plain.removeprefix("diff:") not in inputs:
            continue  # inner blobs' gradients show up in the inputs' and parameters'
        if kind in ("diff", "param_diff") and not case.backward:
            continue
        if key not in ours:
            problems.append(f"{key}: sparknet has no such blob")
            continue
        rtol = BACKWARD_RTOL if kind in ("diff", "param_diff") else FORWARD_RTOL
        problem = mismatch(ours[key], value, key, rtol=rtol)
        if kind == "file" and ours[key].dtype != value.dtype:
            problem = f"{key}: dtype {ours[key].dtype} != Caffe's {value.dtype}"
        if problem:
            problems.append(problem)
    problems += [f"{key}: Caffe wrote no such dataset" for key in sorted(ours)
                 if key.startswith("file:") and key not in caffe]
    return problems


def run_sparknet_solver(case: SolverCase) -> Arrays:
    """``iterations`` steps of sparknet's CaffeSolver on the case's MemoryData batches, fed in
    order as Caffe's MemoryData layer feeds them (iter_size batches per iteration)."""
    config = parse_solver_text(case.solver, source=case.name)
    net = build_net(parse_net_text(case.net, source=case.name), phase="TRAIN",
                    weights=params_by_layer(case.arrays))
    solver = make_optimizer(net, config)
    data = torch.from_numpy(case.arrays["data"])
    label = torch.from_numpy(case.arrays["label"])
    batch = int(net.input_shapes[net.input_names[0]][0])  # type: ignore[index]
    batches = data.shape[0] // batch
    out: Arrays = {}
    feed = 0
    for k in range(1, case.iterations + 1):
        solver.zero_grad()
        for _ in range(config.iter_size):
            rows = slice((feed % batches) * batch, (feed % batches + 1) * batch)
            feed += 1
            blobs = net(**{net.input_names[0]: data[rows], net.input_names[1]: label[rows]})
            net.total_loss(blobs).backward()
        solver.step()
        out.update(_flat_params(net, f"iter{k}:"))
    out.update(_flat_params(net))
    return out


def step_solver(case: SolverCase, net: torch.nn.Module, solver: torch.optim.Optimizer,
                first: int, last: int) -> None:
    """Iterations first..last (1-based) of ``solver`` on the case's MemoryData batches, as
    Caffe feeds them (iter_size batches per iteration, cycling): to go on from a snapshot."""
    iter_size = solver.config.iter_size  # type: ignore[attr-defined]
    data, label = torch.from_numpy(case.arrays["data"]), torch.from_numpy(case.arrays["label"])
    names = net.input_names  # type: ignore[attr-defined]
    batch = int(net.input_shapes[names[0]][0])  # type: ignore[attr-defined]
    batches = data.shape[0] // batch
    feed = (first - 1) * iter_size
    for _ in range(first, last + 1):
        solver.zero_grad()
        for _ in range(iter_size):
            rows = slice((feed % batches) * batch, (feed % batches + 1) * batch)
            feed += 1
            blobs = net(**{names[0]: data[rows], names[1]: label[rows]})
            net.total_loss(blobs).backward()  # type: ignore[attr-defined]
        solver.step()


def compare_solver(ours: Arrays, caffe: Arrays) -> list[str]:
    problems = []
    for key, value in sorted(caffe.items()):
        if key not in ours:
            problems.append(f"{key}: sparknet has no such parameter")
            continue
        problem = mismatch(ours[key], value, key, rtol=SOLVER_RTOL)
        if problem:
            problems.append(problem)
    return problems


# -- committed regression cases ------------------------------------------------------------

def save_case(case: NetCase | SolverCase, caffe: Arrays, folder: Path, *, found: str) -> None:
    """Write a case and Caffe's results as a regression case: NAME.prototxt (and, for a
    solver, NAME.solver.prototxt), NAME.npz (the inputs, and Caffe's results under
    ``caffe:``) and NAME.json (what it covers and what mismatched when it was found)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, object] = {"found": found, "note": case.note}
    if isinstance(case, NetCase):
        (folder / f"{case.name}.prototxt").write_text(case.prototxt)
        meta.update(kind="net", layer_type=case.layer_type, phase=case.phase,
                    backward=case.backward)
        if case.passes > 1:
            meta.update(passes=case.passes, lr=case.lr)
    else:
        (folder / f"{case.name}.prototxt").write_text(case.net)
        (folder / f"{case.name}.solver.prototxt").write_text(case.solver)
        meta.update(kind="solver", solver_type=case.solver_type, lr_policy=case.lr_policy,
                    iterations=case.iterations)
    arrays = {**case.arrays, **{f"caffe:{k}": v for k, v in caffe.items()}}
    np.savez_compressed(folder / f"{case.name}.npz", **arrays)  # type: ignore[arg-type]
    (folder / f"{case.name}.json").write_text(json.dumps(meta, indent=1) + "\n")


def load_case(path: Path) -> tuple[NetCase | SolverCase, Arrays]:
    """A regression case saved by ``save_case``, and Caffe's results for it."""
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as npz:
        stored = {k: npz[k] for k in npz.files}
    arrays = {k: v for k, v in stored.items() if not k.startswith("caffe:")}
    caffe = {k.removeprefix("caffe:"): v for k, v in stored.items() if k.startswith("caffe:")}
    prototxt = path.with_suffix(".prototxt").read_text()
    if meta["kind"] == "net":
        return NetCase(name=path.stem, layer_type=meta["layer_type"], prototxt=prototxt,
                       phase=meta["phase"], backward=meta["backward"], arrays=arrays,
                       note=meta["note"], passes=meta.get("passes", 1),
                       lr=meta.get("lr", 0.0)), caffe
    solver = path.with_name(f"{path.stem}.solver.prototxt").read_text()
    return SolverCase(name=path.stem, solver_type=meta["solver_type"],
                      lr_policy=meta["lr_policy"], solver=solver, net=prototxt,
                      iterations=meta["iterations"], arrays=arrays, note=meta["note"]), caffe
