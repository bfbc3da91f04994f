"""Writes Fashion-MNIST as an ImageNet-like JPEG folder: OUT/train/<class>/*.jpg, OUT/val/...

    python scripts/fashion_jpegs.py OUT [--size 64 --rgb] [--train N] [--val N] [--copies C]

``--size 64 --rgb`` upscales to 64x64 RGB (the benchmarks' setting, so decoding costs what it
would on photos). ``--copies C`` writes the training images C times (distinct files), for
datasets larger than memory. Reads the Debian package's files (dataset-fashion-mnist).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from sparknet.data import fashion_mnist
from sparknet_testing.data import write_image_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--rgb", action="store_true")
    parser.add_argument("--train", type=int, default=None, help="first N training images")
    parser.add_argument("--val", type=int, default=None, help="first N test images")
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=fashion_mnist.DEFAULT_DIR)
    args = parser.parse_args()
    train = write_image_folder(args.out / "train", split="train", count=args.train,
                               size=args.size, rgb=args.rgb, source=args.data_dir)
    for copy in range(1, args.copies):
        for image in sorted(train.glob("*/train-*.jpg")):
            if "-copy" not in image.stem:
                shutil.copyfile(image, image.with_name(f"{image.stem}-copy{copy}.jpg"))
    write_image_folder(args.out / "val", split="test", count=args.val, size=args.size,
                       rgb=args.rgb, source=args.data_dir)
    print(f"wrote {sum(1 for _ in args.out.glob('*/*/*.jpg')):,} JPEG files under {args.out}")


if __name__ == "__main__":
    main()
