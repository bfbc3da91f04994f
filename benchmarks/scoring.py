"""Rows/s of ``SparkNetModel.transform`` vs ``pyspark.ml.functions.predict_batch_udf``.

Same network (LeNet with fixed weights), same cached DataFrame (Fashion-MNIST images as
``array<float>``), same batch size, one PyTorch thread per Python worker in both. Each
scorer writes its output to Spark's ``noop`` sink, so every row is scored and nothing is
collected. One warm-up per scorer, then ``--repeats`` alternating timed runs; medians.

    .venv/bin/python benchmarks/scoring.py [--rows 60000] [--batch-size 1024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from baseline import initial_network
from common import command as run_command
from common import machine_line, write_report


def sparknet_scorer(df: Any, batch_size: int) -> Callable[[], None]:
    from sparknet.flat import FlatLayout, flatten_state
    from sparknet.ml import SparkNetModel
    from sparknet.ml.persistence import SavedNetwork

    network = initial_network(seed=0)
    layout = FlatLayout.of(network)
    floats, ints = flatten_state(network, layout)
    saved = SavedNetwork(network="lenet", input_shape=(1, 28, 28), num_classes=10,
                         input_scale=1.0, layout=layout, floats=floats, ints=ints)
    model = SparkNetModel._from_saved(saved, scoringBatchSize=batch_size)

    def run() -> None:
        (model.transform(df).select("prediction", "probability")
         .write.format("noop").mode("overwrite").save())

    return run


def predict_batch_scorer(df: Any, batch_size: int) -> Callable[[], None]:
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import ArrayType, FloatType

    weights = initial_network(seed=0).state_dict()  # shipped to the workers with the UDF

    def make_predict_fn() -> Callable[[np.ndarray], np.ndarray]:
        import torch

        from sparknet.models.zoo import LeNet

        torch.set_num_threads(1)
        module = LeNet()
        module.load_state_dict(weights)
        module.eval()

        def predict(inputs: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                x = torch.from_numpy(inputs.astype(np.float32)).reshape(-1, 1, 28, 28)
                return torch.softmax(module(x), dim=1).numpy()

        return predict

    udf = predict_batch_udf(make_predict_fn, return_type=ArrayType(FloatType()),
                            batch_size=batch_size, input_tensor_shapes=[[784]])

    def run() -> None:
        from pyspark.sql import functions as F

        scored = df.withColumn("probability", udf("features"))
        top1 = F.array_position("probability", F.array_max("probability")) - 1
        (scored.withColumn("prediction", top1.cast("double")).select("prediction", "probability")
         .write.format("noop").mode("overwrite").save())

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import pandas as pd

    from sparknet.data import fashion_mnist
    from sparknet.engine.spark_session import get_or_create_session

    spark = get_or_create_session("local[2]", app_name="bench-scoring")
    split = fashion_mnist.load_split("train")
    n = min(args.rows, len(split.labels))
    frame = pd.DataFrame({"features": list(split.images[:n].reshape(n, -1)
                                           .astype(np.float32) / 255)})
    df = spark.createDataFrame(frame).repartition(2).cache()
    assert df.count() == n
    scorers = {"sparknet": sparknet_scorer(df, args.batch_size),
               "predict_batch_udf": predict_batch_scorer(df, args.batch_size)}
    for run in scorers.values():
        run()  # warm-up: Python workers start, networks are built and cached
    times: dict[str, list[float]] = {name: [] for name in scorers}
    for _ in range(args.repeats):
        for name, run in scorers.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    spark.stop()
    summary = {name: {"seconds": t, "median_seconds": statistics.median(t),
                      "rows_per_second": n / statistics.median(t)} for name, t in times.items()}
    ratio = summary["sparknet"]["rows_per_second"] / summary["predict_batch_udf"]["rows_per_second"]
    report(args, n, summary, ratio)


def report(args: argparse.Namespace, n: int, summary: dict[str, Any], ratio: float) -> None:
    command, machine = run_command(), machine_line()
    lines = [
        "# Scoring: SparkNetModel.transform vs predict_batch_udf",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"{n:,} Fashion-MNIST rows (`array<float>` of 784, cached, 2 partitions), LeNet, batch "
        f"size {args.batch_size}, one PyTorch thread per Python worker, Spark `local[2]`, "
        "output written to the `noop` sink. Both measured in the same run, alternating, after "
        f"one warm-up each; median of {args.repeats}.",
        "",
        "| scorer | median s | rows/s |",
        "|--------|----------|--------|",
    ]
    for name, label in (("sparknet", "`SparkNetModel.transform` (Arrow UDF)"),
                        ("predict_batch_udf", "`predict_batch_udf`")):
        s = summary[name]
        lines.append(f"| {label} | {s['median_seconds']:.2f} | {s['rows_per_second']:,.0f} |")
    lines += ["", f"**transform / predict_batch_udf throughput: {ratio:.2f}x** "
              "(target >= 1.0x).", ""]
    write_report("scoring", "\n".join(lines),
                 {"command": command, "machine": machine, "rows": n, "ratio": ratio, **summary})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
