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
