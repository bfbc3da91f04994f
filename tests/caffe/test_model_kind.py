"""caffe: model references, solver -> engine mapping and config validation (no Spark)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sparknet.caffe.model_kind import (
    CaffeInput,
    apply_solver,
    build_model,
    parse_caffe_ref,
    read_solver_file,
    write_caffe_files,
)
from sparknet.config import OptimizerConfig, TrainConfig
from sparknet.data.shards import InputSpec
from sparknet.errors import CaffeFormatError, ConfigError
from sparknet.flat import FlatLayout, flatten_state
from sparknet.models.registry import resolve_model


def test_reference_parts(lenet_files: tuple[Path, Path]) -> None:
    _, net = lenet_files
    ref = parse_caffe_ref(f"caffe:{net}#1,28,28")
    assert (ref.net, ref.weights, ref.input_shape) == (str(net), None, (1, 28, 28))
    assert str(ref) == f"caffe:{net}#1,28,28"


@pytest.mark.parametrize("suffix", ["#1,x,28", "#0,28,28", "#"])
def test_bad_input_shape_is_a_config_error(lenet_files: tuple[Path, Path], suffix: str) -> None:
    _, net = lenet_files
    with pytest.raises(ConfigError, match="input shape"):
        resolve_model(f"caffe:{net}{suffix}" if suffix != "#" else f"caffe:{net}#,")


def test_missing_files_are_named(tmp_path: Path, lenet_files: tuple[Path, Path]) -> None:
    _, net = lenet_files
    with pytest.raises(ConfigError, match="definition file .*nope.prototxt does not exist"):
        resolve_model(f"caffe:{tmp_path}/nope.prototxt")
    with pytest.raises(ConfigError, match="weights file .*w.caffemodel does not exist"):
        resolve_model(f"caffe:{net}@{tmp_path}/w.caffemodel#1,28,28")


def test_data_layer_net_needs_its_shape(lenet_files: tuple[Path, Path]) -> None:
    _, net = lenet_files
    with pytest.raises(CaffeFormatError, match="input_shapes"):
        resolve_model(f"caffe:{net}").build()
    logits = resolve_model(f"caffe:{net}#1,28,28").build()(torch.zeros(3, 1, 28, 28))
    assert logits.shape == (3, 10)


def test_seed_picks_the_fillers(lenet_files: tuple[Path, Path]) -> None:
    _, net = lenet_files
    ref = parse_caffe_ref(f"caffe:{net}#1,28,28")

    def weights(seed: int) -> np.ndarray:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(ref)
        return flatten_state(model, FlatLayout.of(model))[0]

    np.testing.assert_array_equal(weights(1), weights(1))
    assert not np.array_equal(weights(1), weights(2))


def test_weights_suffix_loads_them(tmp_path: Path, lenet_files: tuple[Path, Path]) -> None:
    _, net = lenet_files
    trained = build_model(parse_caffe_ref(f"caffe:{net}#1,28,28"))
    with torch.no_grad():
        for p in trained.parameters():
            p.normal_()
    caffemodel, _ = write_caffe_files(trained, tmp_path)
    loaded = resolve_model(f"caffe:{net}@{caffemodel}#1,28,28").build()
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(loaded(x), trained(x), rtol=0, atol=0)


def test_transform_param_replaces_the_scale(lenet_files: tuple[Path, Path]) -> None:
    _, net = lenet_files
    prep = resolve_model(f"caffe:{net}#1,28,28").input_prep(
        InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255))
    assert isinstance(prep, CaffeInput)
    assert prep.transform.scale == pytest.approx(0.00390625)
    pixels = np.full((2, 1, 28, 28), 200, np.uint8)
    x = prep(pixels, torch.device("cpu"), train=True, rng=np.random.default_rng(0))
    torch.testing.assert_close(x, torch.full((2, 1, 28, 28), 200 * 0.00390625))


def test_solver_maps_to_engine_settings(solver_copy: Path, lenet_files: tuple[Path, Path]
                                        ) -> None:
    _, net = lenet_files
    values = apply_solver({"engine": {"tau": 50}}, solver_copy, input_shape=(1, 28, 28))
    config = TrainConfig.from_dict(values)
    # LeNet's solver: max_iter 10000, test_interval 500, snapshot 5000, Data batch_size 64.
    assert config.model == f"caffe:{net}#1,28,28"
    assert (config.engine.rounds, config.engine.eval_every, config.checkpoint_every) == (
        200, 10, 100)
    assert config.engine.batch_size == 64
    assert (config.optimizer.name, config.optimizer.caffe_solver) == (
        "caffe", solver_copy.read_text())
    # Flags win over the mapping.
    given = apply_solver({"engine": {"tau": 7, "rounds": 3, "batch_size": 8}}, solver_copy,
                         input_shape=(1, 28, 28))
    assert (given["engine"]["rounds"], given["engine"]["batch_size"]) == (3, 8)


def test_solver_mapping_errors(lenet_files: tuple[Path, Path], solver_copy: Path) -> None:
    solver, net = lenet_files
    with pytest.raises(ConfigError, match="give --tau N, or --rounds R"):
        apply_solver({}, solver_copy, input_shape=(1, 28, 28))
    # The BVLC solver names its net relative to Caffe's root, which is not here.
    with pytest.raises(ConfigError, match="pass --model caffe:NET.prototxt"):
        apply_solver({"engine": {"tau": 5}}, solver, input_shape=(1, 28, 28))
    with pytest.raises(ConfigError, match="--caffe-solver trains a Caffe net"):
        apply_solver({"model": "lenet", "engine": {"tau": 5}}, solver, input_shape=(1, 28, 28))
    ok = apply_solver({"model": f"caffe:{net}", "engine": {"tau": 5}}, solver,
                      input_shape=(1, 28, 28))
    assert ok["model"] == f"caffe:{net}#1,28,28"


def test_optimizer_config_pairs_name_and_solver(solver_copy: Path) -> None:
    with pytest.raises(ConfigError, match="optimizer.caffe_solver=None"):
        OptimizerConfig(name="caffe")
    with pytest.raises(ConfigError, match="optimizer.caffe_solver="):
        OptimizerConfig(name="sgd", caffe_solver=solver_copy.read_text())


def test_solver_text_is_checked_when_a_run_starts(tmp_path: Path, solver_copy: Path,
                                                  lenet_files: tuple[Path, Path]) -> None:
    _, net = lenet_files
    model = resolve_model(f"caffe:{net}#1,28,28")
    with pytest.raises(ConfigError, match="does not exist"):
        read_solver_file(tmp_path / "none.prototxt")
    bad = solver_copy.read_text().replace('lr_policy: "inv"', 'lr_policy: "cosine"')
    with pytest.raises(ConfigError, match="lr_policy='cosine' is unknown"):
        model.local_optimizer(OptimizerConfig(name="caffe", caffe_solver=bad))
    broken = "base_lr: 0.01\nmomentum 0.9 {\n"
    with pytest.raises(CaffeFormatError, match=r"optimizer.caffe_solver:2:"):
        model.local_optimizer(OptimizerConfig(name="caffe", caffe_solver=broken))
    adam = solver_copy.read_text() + '\ntype: "Adam"\n'
    with pytest.raises(ConfigError, match="use 'reset'"):
        model.local_optimizer(OptimizerConfig(name="caffe", caffe_solver=adam,
                                              momentum_policy="average"))
    plain = OptimizerConfig(name="caffe", caffe_solver=adam)
    assert model.local_optimizer(plain).micro_batches == 1
    with pytest.raises(ConfigError, match="runs a Caffe solver on a Caffe-defined net"):
        resolve_model("lenet").local_optimizer(OptimizerConfig(name="caffe", caffe_solver=adam))
