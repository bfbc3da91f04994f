"""LeNet trained on a Fashion-MNIST subset by a real local[2] Spark session."""

import numpy as np
import pytest
import torch

from sparknet.config import EngineConfig, OptimizerConfig, TrainConfig
from sparknet.data.shards import InputSpec
from sparknet.data.sources import from_arrays
from sparknet.engine.run_dir import load_result
from sparknet.engine.trainer import train

pytestmark = pytest.mark.spark


def test_lenet_reaches_78_percent_on_a_fashion_mnist_subset(spark, fashion, tmp_path):
    train_split, test_split = fashion["train"], fashion["test"]
    spec = InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255)
    data = from_arrays(spark.sparkContext,
                       train=(train_split.images[:12000], train_split.labels[:12000]),
                       test=(test_split.images[:2000], test_split.labels[:2000]),
                       spec=spec, num_workers=2, seed=0)
    config = TrainConfig(model="lenet", seed=0,
                         engine=EngineConfig(num_workers=2, tau=25, batch_size=64, rounds=12,
                                             eval_every=6),
                         optimizer=OptimizerConfig(lr=0.01, momentum=0.9))
    result = train(data, config=config, run_dir=tmp_path, progress=False)
    accuracy = result.final_accuracy
    assert accuracy is not None and accuracy >= 0.78

    # Distributed evaluation equals a single-process evaluation of the same weights.
    model = load_result(tmp_path).model()
    x = torch.from_numpy(test_split.images[:2000]).float() / 255
    with torch.no_grad():
        predicted = model(x).argmax(1).numpy()
    assert np.mean(predicted == test_split.labels[:2000]) == pytest.approx(accuracy, abs=1e-12)
    for name in ("metrics.jsonl", "metrics.png", "config.json", "final/model.safetensors",
                 "final/state.json", "checkpoints/LATEST"):
        assert (tmp_path / name).is_file(), name
