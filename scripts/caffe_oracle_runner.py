"""Runs inside the Caffe oracle chroot (Python 3.9, Debian's python3-caffe): real Caffe on
the cases of one request folder. Started by ``scripts/caffe_oracle.sh run DIR``.

DIR/request.json: {"cases": [CASE, ...]}; each CASE names files in DIR (no pickle anywhere):

- {"name", "kind": "net", "prototxt", "phase": "TRAIN"|"TEST", "arrays", "backward": bool}
  arrays (npz): ``input:<blob>`` values, ``param:<layer>:<i>`` weights, ``top_diff:<blob>``
  gradients to start the backward pass from (loss tops start from their loss_weight).
  Result DIR/out/NAME.npz: ``blob:<name>`` after the forward pass, ``param:<layer>:<i>``
  after it (BatchNorm statistics move in TRAIN), and with backward ``diff:<blob>`` and
  ``param_diff:<layer>:<i>``; every dataset of each file an HDF5Output layer wrote, as
  ``file:<file_name>:<dataset>`` in its stored dtype (read once Caffe closed the file).
  With "passes": P > 1 the net runs P forward (and backward) passes in a row, as a solver's
  iterations do: arrays hold ``pass<k>:input:<blob>`` and ``pass<k>:top_diff:<blob>`` for
  k = 1..P, results come as ``pass<k>:blob:...``, ``pass<k>:diff:...``,
  ``pass<k>:param_diff:...`` (parameter gradients of that pass alone), and with "lr": r > 0
  each pass ends with the step ``data -= r * diff`` and ``pass<k>:param:...`` after it
  (what LSTM and RNN carry from one pass to the next shows in the later passes).
- {"name", "kind": "solver", "solver", "arrays", "iterations": N}
  The solver's net reads a MemoryData layer; arrays hold ``data`` and ``label`` (fed in
  order, one batch per forward pass) and ``param:<layer>:<i>``. Result: ``param:...`` after
  N iterations and ``iter<k>:param:...`` after each iteration k (1-based). With
  "snapshot_at": k, Caffe's ``solver.snapshot()`` after iteration k; its .solverstate is
  kept as DIR/out/NAME.solverstate and its caffemodel under its own name in DIR/out. With
  "restore": FILE (a .solverstate in DIR, its caffemodel where its learned_net says),
  ``solver.restore(FILE)`` first, as ``caffe train --snapshot``: the N iterations go on from
  the snapshot's (k counts from there).

- {"name", "kind": "imageset", "list", "root", "options": [...], "db", "prototxt",
  "phase"}: Caffe's own ``convert_imageset OPTIONS ROOT LIST DB`` writes the database DB
  (kept in DIR/out/DB for the caller), then a forward pass of the prototxt (whose Data layer
  reads DB) gives ``blob:<name>`` for every blob: Caffe's Data layer output.
- {"name", "kind": "schema"}: every field of Caffe's caffe_pb2 as strings
  ``Message.field=number:type:label`` in ``fields`` (what sparknet's schema must declare).

Each finished case appends its name to DIR/out/done (a Caffe CHECK failure aborts the whole
process, so the caller learns from that file which case Caffe refused). A Python error in a
case is written to DIR/out/NAME.error and the run goes on.
"""

import json
import os
import sys
import traceback

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")
import caffe  # noqa: E402

caffe.set_mode_cpu()


def set_params(net, arrays):
    for key in arrays.files:
        if key.startswith("param:"):
            _, layer, index = key.split(":")
            target = net.params[layer][int(index)]
            value = arrays[key]
            if target.data.shape != value.shape:
                raise ValueError("param %s: Caffe's shape %s, given %s"
                                 % (key, target.data.shape, value.shape))
            target.data[...] = value


def params_of(net, prefix=""):
    out = {}
    for layer, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            out["%sparam:%s:%d" % (prefix, layer, i)] = blob.data.copy()
    return out


def run_net(folder, case):
    out = net_passes(folder, case)  # the net is gone: HDF5Output has closed its files
    out.update(written_files(os.path.join(folder, case["prototxt"])))
    return out


def written_files(prototxt):
    """The datasets of the files the net's HDF5Output layers wrote (relative to the working
    directory, as Caffe opens them)."""
    import h5py
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    net = caffe_pb2.NetParameter()
    with open(prototxt) as f:
        text_format.Merge(f.read(), net)
    out = {}
    for layer in net.layer:
        name = layer.hdf5_output_param.file_name
        if layer.type == "HDF5Output" and os.path.isfile(name):
            with h5py.File(name, "r") as file:
                for dataset in file:
                    out["file:%s:%s" % (name, dataset)] = file[dataset][...]
    return out


def net_passes(folder, case):
    phase = caffe.TRAIN if case["phase"] == "TRAIN" else caffe.TEST
    net = caffe.Net(os.path.join(folder, case["prototxt"]), phase)
    arrays = np.load(os.path.join(folder, case["arrays"]))
    set_params(net, arrays)
    passes = int(case.get("passes", 1))
    if passes == 1:
        return one_pass(net, arrays, "", case.get("backward"))
    out = {}
    for k in range(1, passes + 1):
        out.update(one_pass(net, arrays, "pass%d:" % k, case.get("backward")))
        rate = float(case.get("lr", 0))
        if rate:
            for layer, blobs in net.params.items():
                for i, blob in enumerate(blobs):
                    blob.data[...] -= rate * blob.diff
                    out["pass%d:param:%s:%d" % (k, layer, i)] = blob.data.copy()
    return out


def one_pass(net, arrays, prefix, backward):
    """One forward (and backward) pass on the arrays under ``prefix``; results under it."""
    for key in arrays.files:
        if key.startswith(prefix + "input:"):
            name = key[len(prefix + "input:"):]
            net.blobs[name].reshape(*arrays[key].shape)
            net.blobs[name].data[...] = arrays[key]
    net.forward()
    out = {prefix + "blob:" + name: blob.data.copy() for name, blob in net.blobs.items()}
    if not prefix:
        out.update(params_of(net))
    if backward:
        for blobs in net.params.values():
            for blob in blobs:
                blob.diff[...] = 0
        for key in arrays.files:
            if key.startswith(prefix + "top_diff:"):
                net.blobs[key[len(prefix + "top_diff:"):]].diff[...] = arrays[key]
        net.backward()
        out.update({prefix + "diff:" + name: blob.diff.copy()
                    for name, blob in net.blobs.items()})
        for layer, blobs in net.params.items():
            for i, blob in enumerate(blobs):
                out["%sparam_diff:%s:%d" % (prefix, layer, i)] = blob.diff.copy()
    return out


def run_solver(folder, case):
    solver = caffe.get_solver(os.path.join(folder, case["solver"]))
    arrays = np.load(os.path.join(folder, case["arrays"]))
    set_params(solver.net, arrays)
    data = np.ascontiguousarray(arrays["data"], dtype=np.float32)
    label = np.ascontiguousarray(arrays["label"], dtype=np.float32)
    solver.net.set_input_arrays(data, label)
    if case.get("restore"):
        solver.restore(case["restore"])
    out = {}
    for _ in range(int(case["iterations"])):
        solver.step(1)
        k = solver.iter
        out.update(params_of(solver.net, "iter%d:" % k))
        if k == case.get("snapshot_at"):
            # Caffe's own snapshot (prefix from the solver): kept in out/ for the caller.
            solver.snapshot()
            import shutil

            from caffe.proto import caffe_pb2
            from google.protobuf import text_format

            param = caffe_pb2.SolverParameter()
            with open(os.path.join(folder, case["solver"])) as f:
                text_format.Merge(f.read(), param)
            made = "%s_iter_%d" % (param.snapshot_prefix, k)
            shutil.copy(made + ".solverstate",
                        os.path.join(folder, "out", case["name"] + ".solverstate"))
            shutil.copy(made + ".caffemodel",
                        os.path.join(folder, "out", os.path.basename(made) + ".caffemodel"))
    out.update(params_of(solver.net))
    return out


def run_imageset(folder, case):
    import shutil
    import subprocess

    db = os.path.join(folder, case["db"])
    done = subprocess.run(["convert_imageset", *case["options"], case["root"], case["list"],
                           db], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise RuntimeError("convert_imageset failed: %s" % done.stderr.decode()[-2000:])
    phase = caffe.TRAIN if case["phase"] == "TRAIN" else caffe.TEST
    net = caffe.Net(os.path.join(folder, case["prototxt"]), phase)
    net.forward()
    out = {"blob:" + name: blob.data.copy() for name, blob in net.blobs.items()}
    del net  # closes the database before it is copied
    shutil.copytree(db, os.path.join(folder, "out", case["db"]))
    return out


def run_schema(folder, case):
    from caffe.proto import caffe_pb2

    labels = {1: "optional", 2: "required", 3: "repeated"}
    fields = []
    for message in caffe_pb2.DESCRIPTOR.message_types_by_name.values():
        for field in message.fields:
            kind = field.type
            fields.append("%s.%s=%d:%d:%s" % (message.name, field.name, field.number, kind,
                                              labels[field.label]))
    return {"fields": np.array(sorted(fields))}


RUNNERS = {"net": run_net, "solver": run_solver, "imageset": run_imageset,
           "schema": run_schema}


def main():
    folder = sys.argv[1]
    os.chdir(folder)  # a solver's net: path is relative to the working directory in Caffe
    out_dir = os.path.join(folder, "out")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(folder, "request.json")) as f:
        cases = json.load(f)["cases"]
    for case in cases:
        sys.stderr.write("case %s\n" % case["name"])
        sys.stderr.flush()
        try:
            result = RUNNERS[case["kind"]](folder, case)
            np.savez(os.path.join(out_dir, case["name"] + ".npz"), **result)
        except Exception:  # one broken case must not hide the others' results
            with open(os.path.join(out_dir, case["name"] + ".error"), "w") as f:
                f.write(traceback.format_exc())
        with open(os.path.join(out_dir, "done"), "a") as f:
            f.write(case["name"] + "\n")


if __name__ == "__main__":
    main()
