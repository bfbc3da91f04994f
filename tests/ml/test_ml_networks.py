"""Networks on the Python API: factory keyword arguments (networkArgs), callables and nn.Module
classes, and a user's module that only the driver can import (shipped to the executors)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparknet.errors import ConfigError
from sparknet.ml import SparkNetEstimator, SparkNetModel
from sparknet.ml.persistence import WEIGHTS_DIR
from sparknet_testing import nets
from sparknet_testing.tabular import frame, standardized

pytestmark = pytest.mark.spark

PARAMS = {"inputShape": [4], "numWorkers": 2, "tau": 5, "batchSize": 16, "rounds": 1,
          "progress": "off"}


@pytest.fixture(scope="module")
def iris(spark: Any) -> Any:
    x, y = standardized("iris")
    return frame(spark, x, y).cache()


def test_network_args_size_the_network_and_persist(iris: Any, tmp_path: Path) -> None:
    sizes = {}
    for hidden in (8, 16):
        model = SparkNetEstimator(network="sparknet_testing.nets:mlp",
                                  networkArgs=json.dumps({"inputs": 4, "hidden": hidden,
                                                          "outputs": 3}), **PARAMS).fit(iris)
        sizes[hidden] = model.saved_network.layout.num_floats
        model.save(str(tmp_path / f"h{hidden}"))
        loaded = SparkNetModel.load(str(tmp_path / f"h{hidden}"))
        assert loaded.getNetworkArgs() == model.getNetworkArgs()  # type: ignore[attr-defined]
        np.testing.assert_array_equal(loaded.saved_network.floats, model.saved_network.floats)
    assert sizes == {8: 4 * 8 + 8 + 8 * 3 + 3, 16: 4 * 16 + 16 + 16 * 3 + 3}


def test_a_function_or_an_nn_module_class_as_the_network(iris: Any) -> None:
    args = '{"inputs": 4, "outputs": 3}'
    by_function = SparkNetEstimator(network=nets.mlp, networkArgs=args, **PARAMS)
    by_class = SparkNetEstimator(network=nets.MLP, networkArgs=args, **PARAMS)
    assert by_function.getNetwork() == "sparknet_testing.nets:mlp"  # type: ignore[attr-defined]
    assert by_class.getNetwork() == "sparknet_testing.nets:MLP"  # type: ignore[attr-defined]
    np.testing.assert_array_equal(by_function.fit(iris).saved_network.floats,
                                  by_class.fit(iris).saved_network.floats)


def test_networks_that_cannot_be_named_elsewhere_are_refused() -> None:
    with pytest.raises(TypeError, match=r"define it at the top level of a module"):
        SparkNetEstimator(network=lambda: nets.mlp())
    from sparknet.models.registry import resolve_model

    with pytest.raises(ConfigError, match=r"does not take networkArgs .*unexpected keyword"):
        resolve_model("sparknet_testing.nets:mlp", args='{"width": 3}').build()


def test_bad_network_args_are_one_line() -> None:
    with pytest.raises(ConfigError, match=r"model_args='\[1\]' is invalid: give a JSON object"):
        SparkNetEstimator(network="sparknet_testing.nets:mlp", networkArgs="[1]",
                          **PARAMS).train_config()


def test_a_module_only_the_driver_can_import_is_shipped(spark: Any, iris: Any,
                                                        tmp_path: Path) -> None:
    name = "sparknet_user_net_ship_test"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        from torch import nn

        def net():
            return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    """))
    sys.path.insert(0, str(tmp_path))
    try:
        def importable(_: int) -> bool:
            import importlib.util

            return importlib.util.find_spec(name) is not None

        sc = spark.sparkContext
        assert sc.parallelize([0], 1).map(importable).collect() == [False]
        model = SparkNetEstimator(network=f"{name}:net", **PARAMS).fit(iris)
        assert sc.parallelize([0], 1).map(importable).collect() == [True]
        assert model.transform(iris).filter("prediction is null").count() == 0
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_a_model_saved_in_format_2_still_loads(spark: Any, tmp_path: Path) -> None:
    x, y = standardized("breast_cancer")
    df = frame(spark, x[:64], y[:64])
    fitted = SparkNetEstimator(network="sparknet_testing.nets:mlp",
                               **{**PARAMS, "inputShape": [30]}).fit(df)
    fitted.save(str(tmp_path / "m"))
    # The folder as version 2 wrote it: no objective, no network arguments, no summary.
    meta_path = tmp_path / "m" / WEIGHTS_DIR / "state.json"
    meta = json.loads(meta_path.read_text())
    for key in ("objective", "network_args"):
        del meta[key]
    meta_path.write_text(json.dumps({**meta, "format": "sparknet-model/2"}))
    (tmp_path / "m" / "summary.json").unlink()
    loaded = SparkNetModel.load(str(tmp_path / "m"))
    assert loaded.saved_network.objective == "multiclass" and not loaded.hasSummary
    np.testing.assert_array_equal(loaded.saved_network.floats, fitted.saved_network.floats)
    assert loaded.predict(x[0]) == fitted.predict(x[0])
