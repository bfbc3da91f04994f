"""``sparknet export-onnx``: a saved SparkNetModel (or a ``sparknet train`` run) as ONNX.

Reads the plain files (safetensors + JSON) directly; no Spark session is started.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sparknet.errors import ConfigError


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "export-onnx", help="export a saved SparkNetModel or a train run as ONNX",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path,
                        help="folder of SparkNetModel.write().save(...) or of a 'sparknet "
                             "train' run (holding final/)")
    parser.add_argument("output", type=Path, help="ONNX file to write")
    parser.add_argument("--input-shape", default="1,28,28", metavar="C,H,W",
                        help="input shape, for train runs only (default 1,28,28)")
    parser.add_argument("--input-scale", type=float, default=1 / 255,
                        help="input multiplier, for train runs only (default 1/255)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--model", metavar="MODULE:FUNCTION",
                        help="the network factory the model was trained on, when it is your "
                             "own: sparknet imports no code a saved file names, so name it "
                             "here to trust it")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sparknet.ml.onnx_export import export_onnx

    if args.model is not None:
        from sparknet.models.registry import trust_factory

        trust_factory(args.model)
    saved = load_saved(args.source, input_shape=args.input_shape,
                       input_scale=args.input_scale)
    path = export_onnx(saved, args.output, opset=args.opset)
    print(f"wrote {path}: features [batch, {', '.join(map(str, saved.input_shape))}] float32 "
          f"-> probability [batch, {saved.num_classes}], logits")
    return 0


def load_saved(source: Path, *, input_shape: str, input_scale: float) -> Any:
    from sparknet.ml.persistence import WEIGHTS_DIR, SavedNetwork, read_network

    if (source / WEIGHTS_DIR).is_dir():
        return read_network(source / WEIGHTS_DIR)
    if (source / "final").is_dir():
        from sparknet.engine.run_dir import load_result
        from sparknet.models.kinds import network_outputs

        try:
            shape = tuple(int(d) for d in input_shape.split(","))
        except ValueError:
            raise ConfigError(f"--input-shape {input_shape!r} is not a shape like 1,28,28"
                              ) from None
        result = load_result(source)
        return SavedNetwork(network=result.config.model, input_shape=shape,
                            num_classes=network_outputs(result.source, shape),
                            input_scale=input_scale, layout=result.layout,
                            floats=result.floats, ints=result.ints,
                            objective=result.config.objective,
                            network_args=result.config.model_args)
    raise ConfigError(f"{source} is neither a saved SparkNetModel (no {WEIGHTS_DIR}/) nor a "
                      "'sparknet train' run (no final/): give one of those folders")
