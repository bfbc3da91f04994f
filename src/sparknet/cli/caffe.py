"""``sparknet caffe inspect FILE``: layers, blob shapes and parameter counts of a Caffe file.

FILE is a network definition (``.prototxt``, current or legacy V1 format) or weights
(``.caffemodel``, HDF5 ``.h5`` snapshot). Unreadable or malformed files give one-line errors.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "caffe", help="Caffe files: inspect a definition or weights file",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="caffe_command", metavar="ACTION", required=True)
    inspect = actions.add_parser(
        "inspect", help="print the layers, blob shapes and parameter counts of FILE")
    inspect.add_argument("file", type=Path, help=".prototxt, .caffemodel or .h5 file")
    inspect.set_defaults(handler=run_inspect)


def run_inspect(args: argparse.Namespace) -> int:
    from sparknet.caffe.inspect import format_inspection

    print(format_inspection(args.file))
    return 0
