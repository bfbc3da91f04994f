"""A driver for training on arrays from an ``.npz`` file (tests whose data the CLI cannot make).

``python -m sparknet_testing.drive --master URL --data D.npz --config C.json --run-dir DIR``
trains with ``train_x`` (float32 or uint8, [N, 1, 28, 28]) and ``train_y`` (int64) and exits
like ``sparknet train``: 0 on success, 2 with one ``sparknet: error:`` line otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparknet_testing.drive")
    parser.add_argument("--master", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    from sparknet.config import TrainConfig
    from sparknet.data.shards import InputSpec
    from sparknet.data.sources import from_arrays
    from sparknet.engine.spark_session import get_or_create_session
    from sparknet.engine.trainer import train
    from sparknet.errors import SparknetError

    try:
        config = TrainConfig.from_dict(json.loads(args.config.read_text()))
        arrays = np.load(args.data)
        spark = get_or_create_session(args.master, app_name="sparknet-drive")
        data = from_arrays(spark.sparkContext, train=(arrays["train_x"], arrays["train_y"]),
                           test=None, spec=InputSpec(shape=(1, 28, 28), num_classes=10,
                                                     scale=1 / 255),
                           num_workers=config.engine.num_workers, seed=config.seed)
        train(data, config=config, run_dir=args.run_dir, resume=args.resume, progress=False)
    except SparknetError as exc:
        print(f"sparknet: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
