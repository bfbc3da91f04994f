"""Every setting has one source: the config field. The CLI and the Estimator reach each one,
with the field's documentation and the same default."""

from __future__ import annotations

import argparse

import pytest

from sparknet.cli.main import build_parser
from sparknet.config import TrainConfig
from sparknet.errors import ConfigError
from sparknet.ml import SparkNetEstimator, SparkNetModel
from sparknet.ml.params import MODEL_OWN, model_settings
from sparknet.settings import train_settings


def _train_parser() -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    return commands.choices["train"]


def test_every_config_field_is_a_setting() -> None:
    dotted = {s.dotted for s in train_settings()}
    flat = TrainConfig().to_dict()
    fields = {f"{k}.{n}" if isinstance(v, dict) else k
              for k, v in flat.items() for n in (v if isinstance(v, dict) else [None])}
    assert dotted == {f.removesuffix(".None") for f in fields}


@pytest.mark.parametrize("setting", train_settings(), ids=lambda s: s.dotted)
def test_every_setting_is_a_cli_flag_with_its_doc(setting) -> None:
    actions = {a.dest: a for a in _train_parser()._actions}
    action = actions[f"setting:{setting.dotted}"]
    assert setting.flag in action.option_strings
    assert action.help.replace("%%", "%") == setting.help()
    assert action.default is None  # unset flags leave the TOML value or the field default


@pytest.mark.parametrize("setting", train_settings(), ids=lambda s: s.dotted)
def test_every_setting_is_an_estimator_param_with_the_same_default(setting) -> None:
    estimator = SparkNetEstimator()
    param = estimator.getParam(setting.param)
    assert param.doc == setting.help()
    if setting.default is None:
        assert not estimator.isDefined(param)
    else:
        assert estimator.getOrDefault(param) == setting.default
    suffix = setting.param[0].upper() + setting.param[1:]
    assert callable(getattr(estimator, f"get{suffix}"))
    assert callable(getattr(estimator, f"set{suffix}"))


def test_config_built_from_default_params_is_the_default_config() -> None:
    assert SparkNetEstimator().train_config() == TrainConfig()


def test_setters_getters_and_set_params() -> None:
    estimator = SparkNetEstimator().setTau(7).setTreeFanIn(3).setNesterov(True)
    assert (estimator.getTau(), estimator.getTreeFanIn(), estimator.getNesterov()) == (7, 3, True)
    estimator.setParams(momentumPolicy="average", onNonFinite="skip", evalBatchSize=50)
    config = estimator.train_config()
    assert (config.engine.tau, config.engine.tree_fan_in, config.optimizer.nesterov,
            config.optimizer.momentum_policy, config.engine.on_non_finite,
            config.engine.eval_batch_size) == (7, 3, True, "average", "skip", 50)
    copied = estimator.copy({estimator.tau: 9})
    assert copied.getTau() == 9 and estimator.getTau() == 7
    assert "momentumPolicy" in estimator.explainParams()
    with pytest.raises(TypeError, match="no parameter 'taus'"):
        SparkNetEstimator(taus=3)
    with pytest.raises(ConfigError, match="tau=0"):
        SparkNetEstimator(tau=0).train_config()


def test_the_model_keeps_the_settings_scoring_needs() -> None:
    model = SparkNetModel()
    for setting in model_settings():
        assert model.hasParam(setting.param)
    estimator = SparkNetEstimator(threadsPerWorker=2, device="auto", network="cnn")
    copied = estimator._copyValues(SparkNetModel())
    assert (copied.getThreadsPerWorker(), copied.getDevice(), copied.getNetwork()) == (
        2, "auto", "cnn")
    # Every estimator Param but numClasses, which the model answers as a number.
    assert {s.param for s in SparkNetEstimator._setting_list} - \
        {s.param for s in model_settings()} == set(MODEL_OWN)


def test_cli_flags_build_the_config() -> None:
    from sparknet.cli.train import config_from_args

    args = build_parser().parse_args(["train", "--tau", "12", "--nesterov", "--tree-fan-in",
                                      "3", "--outer", "nesterov", "--outer-lr", "0.5",
                                      "--eval-batch-size", "10", "--model", "cnn"])
    config, _ = config_from_args(args)
    assert (config.engine.tau, config.optimizer.nesterov, config.engine.tree_fan_in,
            config.outer.name, config.outer.lr, config.engine.eval_batch_size,
            config.model) == (12, True, 3, "nesterov", 0.5, 10, "cnn")
    default, _ = config_from_args(build_parser().parse_args(["train"]))
    assert default == TrainConfig()


def test_the_params_table_in_the_docs_is_current() -> None:
    from pathlib import Path

    from sparknet.ml.params import params_markdown

    docs = Path(__file__).resolve().parents[1] / "docs" / "ml.md"
    assert params_markdown() in docs.read_text()


def test_precision_reaches_the_cli_the_toml_and_the_estimator(tmp_path) -> None:
    """One field, engine.precision (and engine.channels_last): flag, TOML key and Param."""
    from sparknet.cli.train import config_from_args

    args = build_parser().parse_args(["train", "--precision", "bf16", "--channels-last"])
    config, _ = config_from_args(args)
    assert (config.engine.precision, config.engine.channels_last) == ("bf16", True)
    toml = tmp_path / "run.toml"
    toml.write_text('[engine]\nprecision = "tf32"\n')
    config, _ = config_from_args(build_parser().parse_args(["train", "--config", str(toml)]))
    assert config.engine.precision == "tf32"
    assert TrainConfig.from_dict(config.to_dict()) == config
    estimator = SparkNetEstimator().setPrecision("bf16").setChannelsLast(True)
    assert estimator.getPrecision() == "bf16"
    assert estimator.train_config().engine.precision == "bf16"
    assert estimator.train_config().engine.channels_last is True
    assert SparkNetEstimator().train_config().engine.precision == "fp32"
    with pytest.raises(ConfigError, match=r"precision='fp16' is invalid: expected 'fp32' or "):
        SparkNetEstimator(precision="fp16").train_config()
