"""``sparknet`` command: one module per subcommand, errors as one line without a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from sparknet.errors import SparknetError

Handler = Callable[[argparse.Namespace], int]

# One module per subcommand in sparknet/cli/, each with register(subparsers).
SUBCOMMANDS = ("train", "env", "simulate", "export_onnx", "caffe")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="sparknet",
        description="Train PyTorch networks on data in Spark with SparkNet's parallel SGD.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"sparknet.cli.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except SparknetError as exc:
        print(f"sparknet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparknet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
