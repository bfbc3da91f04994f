import pytest

from sparknet.config import EngineConfig, OptimizerConfig, OuterConfig, TrainConfig
from sparknet.errors import ConfigError


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: EngineConfig(tau=0), "tau"),
        (lambda: EngineConfig(num_workers=0), "num_workers"),
        (lambda: EngineConfig(batch_size=0), "batch_size"),
        (lambda: EngineConfig(device="tpu"), "device"),  # type: ignore[arg-type]
        (lambda: OptimizerConfig(lr=-1.0), "optimizer.lr"),
        (lambda: OptimizerConfig(momentum=1.0), "optimizer.momentum"),
        (lambda: OuterConfig(name="median"), "outer.name"),  # type: ignore[arg-type]
        (lambda: TrainConfig(seed=-1), "seed"),
    ],
)
def test_invalid_values_name_the_field_and_the_fix(build, field):
    with pytest.raises(ConfigError) as info:
        build()
    message = str(info.value)
    assert message.startswith(f"{field}=")
    assert ":" in message and len(message.split(":", 1)[1].strip()) > 5


def test_from_dict_round_trips_and_rejects_unknown_keys():
    config = TrainConfig(model="cnn", seed=3, engine=EngineConfig(tau=7, num_workers=3))
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown configuration key 'epochs'"):
        TrainConfig.from_dict({"epochs": 3})
    with pytest.raises(ConfigError, match=r"unknown setting engine\.taus"):
        TrainConfig.from_dict({"engine": {"taus": 3}})


@pytest.mark.parametrize(("values", "match"), [
    ({"engine": {"rounds": True}}, r"rounds=True is invalid: expected int"),
    ({"engine": {"eval_every": 2.5}}, r"eval_every=2\.5 is invalid: expected int"),
    ({"optimizer": {"lr": "0.1"}}, r"optimizer\.lr='0\.1' is invalid: expected float"),
    ({"optimizer": {"nesterov": "yes"}}, r"optimizer\.nesterov='yes' is invalid: expected bool"),
    ({"engine": {"tau": "fast"}}, r"tau='fast' is invalid"),
    ({"seed": None}, r"seed=None is invalid: expected int"),
])
def test_values_of_the_wrong_type_are_refused(values, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict(values)


def test_a_saved_config_is_plain_data_that_opens_no_file(tmp_path):
    """A Caffe run's config holds the solver's text; its files need not exist to read it."""
    solver = 'base_lr: 0.01\nlr_policy: "fixed"\n'
    config = TrainConfig(model=f"caffe:{tmp_path}/gone.prototxt#1,28,28",
                         optimizer=OptimizerConfig(name="caffe", caffe_solver=solver))
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert not list(tmp_path.iterdir())
