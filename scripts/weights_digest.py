"""SHA-256 of final weights, to check that a refactor changed no weight (compare two commits).

    python scripts/weights_digest.py RUN_DIR      # a run's final/*.safetensors, byte for byte
    python scripts/weights_digest.py --simulate   # a fixed `sparknet simulate` configuration
                                                  # (K = 3 with a tree sum, Nesterov outer step)
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path


def run_digest(run_dir: Path) -> str:
    final = run_dir / "final"
    parts = [(final / name).read_bytes() for name in ("model.safetensors",
                                                      "optimizer.safetensors")]
    return hashlib.sha256(b"".join(parts)).hexdigest()


def simulate_digest() -> str:
    import numpy as np

    from sparknet.config import TrainConfig
    from sparknet.data import fashion_mnist
    from sparknet.data.shards import InputSpec
    from sparknet.simulate import simulate

    config = TrainConfig.from_dict({
        "model": "lenet", "seed": 3,
        "engine": {"num_workers": 3, "tau": 4, "batch_size": 16, "rounds": 3, "eval_every": 3,
                   "tree_fan_in": 2},
        "optimizer": {"momentum_policy": "reset"},  # the digest predates "auto"
        "outer": {"name": "nesterov", "lr": 0.7, "momentum": 0.9}})
    train, test = fashion_mnist.load_split("train"), fashion_mnist.load_split("test")
    result = simulate((train.images[:3000], train.labels[:3000]), config=config,
                      test=(test.images[:500], test.labels[:500]),
                      spec=InputSpec(shape=(1, 28, 28), num_classes=10, scale=1 / 255))
    return hashlib.sha256(np.asarray(result.floats).tobytes() +
                          np.asarray(result.ints).tobytes()).hexdigest()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(simulate_digest() if sys.argv[1] == "--simulate" else run_digest(Path(sys.argv[1])))
