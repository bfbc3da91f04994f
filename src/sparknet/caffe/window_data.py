"""Caffe's WindowData layer (R-CNN's fine-tuning input, deprecated in Caffe 1.0) as pure
functions.

Its ``window_data_param.source`` is a window file: for each image, in order,
``# INDEX``, the image path (after ``root_folder``), its channels, height and width, the
number of windows and one line ``label overlap x1 y1 x2 y2`` per window (inclusive pixel
corners). A window of ``overlap >= fg_threshold`` is foreground (its label must be > 0); one
of ``overlap < bg_threshold`` is background (label 0); others are dropped. Each batch takes
``batch_size - int(batch_size * fg_fraction)`` background windows, then the rest foreground,
each drawn at random (and mirrored at random under ``transform_param.mirror``), and warps it
to ``crop_size`` x ``crop_size`` (``transform_param.crop_size``) with OpenCV's bilinear resize:
with ``context_pad`` or ``crop_mode: "square"`` the window is first grown (and made square)
and clipped to the image, the clipped part warped to its share of the crop and the rest left
0. Values are ``(pixel - mean) * window_data_param.scale`` (mean from transform_param's
``mean_file`` or ``mean_value``). Images are read in colour (BGR) whatever their channels.

``window_crop`` is one item, bit for bit as Caffe's ``load_batch`` computes it (float32
arithmetic, C's ``round``); ``window_batch`` draws a batch as Caffe does, from a NumPy
generator (Caffe's random numbers are not reproduced: the oracle matches each of Caffe's
items to the window and mirroring that gives it). sparknet does not train from a window
file (its batches are drawn, not a dataset to shard): ``window_batch`` is its forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparknet.caffe.transform import TransformConfig, load_mean, read_image, resize_linear
from sparknet.errors import DataError


@dataclass(frozen=True)
class Window:
    """One window of a window file (its corners inclusive, in pixels)."""

    image: int
    label: int
    overlap: float
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True, kw_only=True)
class WindowFile:
    """A window file read as Caffe's DataLayerSetUp reads it."""

    images: tuple[tuple[Path, tuple[int, int, int]], ...]
    foreground: tuple[Window, ...]
    background: tuple[Window, ...]


def read_window_file(path: Path, *, root: str = "", folder: Path = Path(),
                     fg_threshold: float = 0.5, bg_threshold: float = 0.5) -> WindowFile:
    """The images and the foreground/background windows of a window file; image paths are
    ``root`` + the path, relative to ``folder``."""
    try:
        tokens = Path(path).read_text().split()
    except OSError as err:
        raise DataError(f"cannot read window file {path}: {err.strerror}") from None
    images: list[tuple[Path, tuple[int, int, int]]] = []
    fg: list[Window] = []
    bg: list[Window] = []
    at = 0

    def take(count: int) -> list[str]:
        nonlocal at
        if at + count > len(tokens):
            raise DataError(f"window file {path} ends inside image {len(images)}'s entry")
        at += count
        return tokens[at - count:at]

    if not tokens:
        raise DataError(f"window file {path} is empty")
    try:
        while at < len(tokens):
            hashtag, index = take(2)
            if hashtag != "#":
                raise DataError(f"window file {path}: expected '#' before image {len(images)},"
                                f" found {hashtag!r}")
            name, c, h, w, count = take(5)
            images.append((folder / (root + name), (int(c), int(h), int(w))))
            for _ in range(int(count)):
                label, overlap, x1, y1, x2, y2 = take(6)
                window = Window(int(index), int(label), float(np.float32(overlap)), int(x1),
                                int(y1), int(x2), int(y2))
                if window.overlap >= fg_threshold:
                    if window.label <= 0:
                        raise DataError(f"window file {path}: a foreground window of image "
                                        f"{index} has label {window.label}; Caffe needs > 0")
                    fg.append(window)
                elif window.overlap < bg_threshold:
                    bg.append(Window(window.image, 0, 0.0, window.x1, window.y1, window.x2,
                                     window.y2))
    except ValueError as err:
        raise DataError(f"window file {path}: {err}") from None
    return WindowFile(images=tuple(images), foreground=tuple(fg), background=tuple(bg))


def _round(x: np.float32) -> int:
    """C's round on a float: halves away from zero (exact in double)."""
    return int(math.copysign(math.floor(abs(float(x)) + 0.5), float(x)))


def window_crop(image: np.ndarray, window: Window, *, crop_size: int, context_pad: int = 0,
                square: bool = False, mirror: bool = False, scale: float = 1.0,
                mean: np.ndarray | None = None, mean_values: tuple[float, ...] = ()
                ) -> np.ndarray:
    """One item of Caffe's WindowData batch: ``image`` uint8 (C, H, W) in BGR order, the
    window warped to (C, crop_size, crop_size) float32, as Caffe's load_batch."""
    f32 = np.float32
    channels, rows, cols = image.shape
    x1, y1, x2, y2 = window.x1, window.y1, window.x2, window.y2
    width = height = crop_size
    pad_w = pad_h = 0
    if context_pad > 0 or square:
        context_scale = f32(crop_size) / f32(crop_size - 2 * context_pad)
        half_h = f32(np.float64(y2 - y1 + 1) / 2.0)
        half_w = f32(np.float64(x2 - x1 + 1) / 2.0)
        center_x, center_y = f32(x1) + half_w, f32(y1) + half_h
        if square:
            half_h = half_w = max(half_h, half_w)
        x1 = _round(f32(center_x - half_w * context_scale))
        x2 = _round(f32(center_x + half_w * context_scale))
        y1 = _round(f32(center_y - half_h * context_scale))
        y2 = _round(f32(center_y + half_h * context_scale))
        unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
        pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
        pad_x2, pad_y2 = max(0, x2 - cols + 1), max(0, y2 - rows + 1)
        x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
        scale_x = f32(crop_size) / f32(unclipped_w)
        scale_y = f32(crop_size) / f32(unclipped_h)
        width = _round(f32(f32(x2 - x1 + 1) * scale_x))
        height = _round(f32(f32(y2 - y1 + 1) * scale_y))
        pad_h = _round(f32(f32(pad_y1) * scale_y))
        pad_w = _round(f32(f32(pad_x2 if mirror else pad_x1) * scale_x))
        height = min(height, crop_size - pad_h)
        width = min(width, crop_size - pad_w)
    if not (0 <= x1 <= x2 < cols and 0 <= y1 <= y2 < rows):
        raise DataError(f"window {window} lies outside its image of {cols}x{rows} pixels")
    region = np.ascontiguousarray(image[:, y1:y2 + 1, x1:x2 + 1].transpose(1, 2, 0))
    warped = resize_linear(region, height, width).reshape(height, width, channels)
    if mirror:
        warped = warped[:, ::-1]
    pixels = warped.transpose(2, 0, 1).astype(f32)
    if mean is not None:
        off = (mean.shape[2] - crop_size) // 2
        pixels = pixels - mean[:, off + pad_h:off + pad_h + height,
                               off + pad_w:off + pad_w + width].astype(f32)
    elif mean_values:
        values = mean_values * channels if len(mean_values) == 1 else mean_values
        pixels = pixels - np.asarray(values, dtype=f32)[:, None, None]
    out = np.zeros((channels, crop_size, crop_size), dtype=f32)
    out[:, pad_h:pad_h + height, pad_w:pad_w + width] = pixels * f32(scale)
    return out


def window_file_of_layer(layer: Any, *, folder: Path) -> WindowFile:
    """The window file a WindowData layer names (``source`` and ``root_folder`` relative to
    ``folder``, the prototxt's folder)."""
    p = layer.window_data_param
    return read_window_file(folder / p.source, root=p.root_folder, folder=folder,
                            fg_threshold=p.fg_threshold, bg_threshold=p.bg_threshold)


def window_batch(layer: Any, *, folder: Path, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One batch of a WindowData layer, its windows (and mirrorings) drawn from ``rng``:
    (data float32 (N, C, crop, crop), labels float32 (N,))."""
    p = layer.window_data_param
    config = TransformConfig.from_proto(layer.transform_param, folder=folder)
    if config.crop_size < 1:
        raise DataError(f"layer {layer.name!r} (WindowData): transform_param.crop_size must be"
                        " > 0 (the size windows are warped to)")
    windows = window_file_of_layer(layer, folder=folder)
    num_fg = int(np.float32(p.batch_size) * np.float32(p.fg_fraction))
    mean = load_mean(config)
    items, labels = [], []
    for pool, count in ((windows.background, p.batch_size - num_fg),
                        (windows.foreground, num_fg)):
        if count and not pool:
            raise DataError(f"layer {layer.name!r} (WindowData): the window file has no "
                            f"{'foreground' if pool is windows.foreground else 'background'}"
                            " windows to draw")
        for _ in range(count):
            window = pool[int(rng.integers(len(pool)))]
            mirror = config.mirror and bool(rng.integers(2))
            image = read_image(windows.images[window.image][0], is_color=True)
            items.append(window_crop(image, window, crop_size=config.crop_size,
                                     context_pad=p.context_pad,
                                     square=p.crop_mode == "square", mirror=mirror,
                                     scale=p.scale, mean=mean, mean_values=config.mean_value))
            labels.append(window.label)
    return np.stack(items), np.asarray(labels, dtype=np.float32)
