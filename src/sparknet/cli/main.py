"""``sparknet`` command: one module per subcommand, errors as one line without a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from sparknet.errors import SparknetError

Handler = Callable[[argparse.Namespace], int]

# One module per subcommand in sparknet/cli/, each with register(subparsers).
SUBCOMMANDS = ("train", "env", "simulate", "export_onnx", "caffe")


class OneLineParser(argparse.ArgumentParser):
    """Usage errors are one line too, naming the flag and where to read about it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"sparknet: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = OneLineParser(
        prog="sparknet",
        description="Train PyTorch networks on data in Spark with SparkNet's parallel SGD.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"sparknet.cli.{name}").register(commands)
    return parser


def _quiet_interrupts(record: logging.LogRecord) -> bool:
    """Drops py4j's logged traceback of a Ctrl-C that arrived mid-call: the CLI says it once."""
    return not (record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt))


def main(argv: Sequence[str] | None = None) -> int:
    # Libraries that log through the root logger (py4j does) get one plain handler, filtered.
    logging.basicConfig(format="sparknet: %(levelname)s: %(message)s")
    for log_handler in logging.getLogger().handlers:
        log_handler.addFilter(_quiet_interrupts)
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
    except Exception as exc:
        if os.environ.get("SPARKNET_TRACEBACK"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"sparknet: error: unexpected {type(exc).__name__}: {first} (a bug, or a "
              "problem of this machine; SPARKNET_TRACEBACK=1 shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
