"""``sparknet caffe inspect FILE``: layers, blob shapes and parameter counts of a Caffe file.
``sparknet caffe to-parquet SOURCE OUT``: a Caffe Data layer's LMDB/LevelDB (or an HDF5Data
layer's files) as Parquet.

FILE is a network definition (``.prototxt``, current or legacy V1 format) or weights
(``.caffemodel``, HDF5 ``.h5`` snapshot). SOURCE is a database folder (LMDB or LevelDB, told
apart by their files) or a ``.prototxt`` whose Data layer names one, or whose HDF5Data layer
names a list of HDF5 files (``--phase``). OUT gets the columns ``features`` (the untransformed
C*H*W values, float; an HDF5Data layer's first top) and ``label`` (its second top); train on it
with ``sparknet train --parquet OUT --input-shape C,H,W``. Unreadable or malformed files give
one-line errors.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sparknet.errors import ConfigError


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "caffe", help="Caffe files: inspect a definition or weights file; convert a database",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="caffe_command", metavar="ACTION", required=True)
    inspect = actions.add_parser(
        "inspect", help="print the layers, blob shapes and parameter counts of FILE")
    inspect.add_argument("file", type=Path, help=".prototxt, .caffemodel or .h5 file")
    inspect.set_defaults(handler=run_inspect)
    convert = actions.add_parser(
        "to-parquet", help="write the Datum records of an LMDB/LevelDB (or an HDF5Data layer's "
        "rows) as one Parquet file")
    convert.add_argument("source", type=Path,
                         help="database folder, or a .prototxt whose Data or HDF5Data layer "
                              "names one")
    convert.add_argument("output", type=Path, help="the Parquet file to write")
    convert.add_argument("--phase", choices=("TRAIN", "TEST"), default="TRAIN",
                         help="with a .prototxt: the phase whose Data layer is read")
    convert.add_argument("--limit", type=int, default=None, metavar="N",
                         help="only the first N records")
    convert.set_defaults(handler=run_to_parquet)


def run_inspect(args: argparse.Namespace) -> int:
    from sparknet.caffe.inspect import format_inspection

    print(format_inspection(args.file))
    return 0


def run_to_parquet(args: argparse.Namespace) -> int:
    from sparknet.caffe import hdf5_data
    from sparknet.caffe.database import database_shape, database_source, write_parquet

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit} must be at least 1")
    if args.output.exists():
        raise ConfigError(f"{args.output} exists; give a new file name (nothing is "
                          "overwritten)")
    if _names_hdf5(args.source, args.phase):
        files = hdf5_data.hdf5_source(args.source, phase=args.phase)
        shape = hdf5_data.hdf5_shape(files)
        rows = hdf5_data.write_parquet(files, args.output, limit=args.limit)
        origin = f"{len(files.files)} HDF5 files of {files.list_file}"
    else:
        source = database_source(args.source, phase=args.phase)
        shape = database_shape(source)
        rows = write_parquet(source, args.output, limit=args.limit)
        origin = f"{source.path} ({source.backend})"
    print(f"{rows:,} records of shape {','.join(map(str, shape))} from {origin} -> "
          f"{args.output}; train with: sparknet train --parquet {args.output} --input-shape "
          f"{','.join(map(str, shape))}")
    return 0


def _names_hdf5(path: Path, phase: str) -> bool:
    """Whether a .prototxt's first data source in ``phase`` is an HDF5Data layer."""
    from sparknet.caffe.prototxt import filter_phase, read_net

    if not path.is_file():
        return False
    types = [layer.type for layer in filter_phase(read_net(path), phase).layer]
    return "HDF5Data" in types and "Data" not in types
