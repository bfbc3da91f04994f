"""Caffe's input pipeline as pure functions: DataTransformer (scale, mean, crop, mirror)
and the ImageData layer's image reading (BGR order, grayscale, OpenCV bilinear resize).

Images are decoded with Pillow; the grayscale conversion and the resize reproduce what
Caffe's OpenCV/libpng do bit for bit on 8-bit images (checked against real Caffe output):
libpng's RGB->gray with coefficients 9797/19234/3737 (>> 15, truncating) and OpenCV's
INTER_LINEAR with 11-bit fixed-point weights and its SIMD vertical rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparknet.caffe.weights import read_binaryproto
from sparknet.errors import CaffeFormatError, ConfigError, DataError


@dataclass(frozen=True, kw_only=True)
class TransformConfig:
    """Caffe's TransformationParameter; ``mean_file`` is already resolved to a path."""

    scale: float = 1.0
    mirror: bool = False
    crop_size: int = 0
    mean_file: Path | None = None
    mean_value: tuple[float, ...] = ()
    force_color: bool = False
    force_gray: bool = False

    def __post_init__(self) -> None:
        if self.mean_file is not None and self.mean_value:
            raise ConfigError("mean_file and mean_value are both set; Caffe allows only one")
        if self.crop_size < 0:
            raise ConfigError(f"crop_size={self.crop_size} must be >= 0")
        if self.force_color and self.force_gray:
            raise ConfigError("force_color and force_gray are both set; choose one")

    @classmethod
    def from_proto(cls, param: Any, *, folder: Path = Path(".")) -> TransformConfig:
        """From a TransformationParameter; a relative mean_file is relative to ``folder``."""
        return cls(scale=param.scale, mirror=param.mirror, crop_size=param.crop_size,
                   mean_file=folder / param.mean_file if param.HasField("mean_file") else None,
                   mean_value=tuple(param.mean_value), force_color=param.force_color,
                   force_gray=param.force_gray)


def load_mean(config: TransformConfig) -> np.ndarray | None:
    """The mean image (C, H, W) of ``config.mean_file``, or None."""
    if config.mean_file is None:
        return None
    mean = read_binaryproto(config.mean_file)
    if mean.ndim == 4 and mean.shape[0] == 1:
        mean = mean[0]
    if mean.ndim != 3:
        raise CaffeFormatError(f"{config.mean_file}: mean must be (1, C, H, W), got {mean.shape}")
    return mean.astype(np.float32)


def transform_batch(images: np.ndarray, config: TransformConfig, *, train: bool,
                    rng: np.random.Generator | None = None, mean: np.ndarray | None = None
                    ) -> np.ndarray:
    """Apply Caffe's DataTransformer to a batch (N, C, H, W) of pixel values.

    TEST: centre crop; TRAIN: random crop from ``rng``. Mirroring (when ``mirror``) is random
    in both phases, as in Caffe. ``mean`` is the mean image for ``mean_file`` (see load_mean).
    Returns float32 ``(pixel - mean) * scale``.
    """
    if images.ndim != 4:
        raise DataError(f"images must be (N, C, H, W), got shape {images.shape}")
    n, channels, height, width = images.shape
    if (config.mirror or (train and config.crop_size)) and rng is None:
        raise ConfigError("this transform is random; pass rng=np.random.default_rng(seed)")
    if config.mean_file is not None and mean is None:
        mean = load_mean(config)
    if mean is not None and mean.shape != (channels, height, width):
        raise DataError(f"mean image shape {mean.shape} differs from the images' "
                        f"{(channels, height, width)}")
    values = np.asarray(config.mean_value, dtype=np.float32)
    if len(values) not in (0, 1, channels):
        raise ConfigError(f"mean_value has {len(values)} values for {channels} channels; give "
                          "one value or one per channel")
    crop = config.crop_size
    if crop and (crop > height or crop > width):
        raise DataError(f"crop_size {crop} is larger than the image ({height}x{width})")
    out = np.empty((n, channels, crop or height, crop or width), dtype=np.float32)
    for i in range(n):
        mirror = bool(config.mirror and rng is not None and rng.integers(2))
        top, left = 0, 0
        if crop:
            if train:
                assert rng is not None
                top = int(rng.integers(height - crop + 1))
                left = int(rng.integers(width - crop + 1))
            else:
                top, left = (height - crop) // 2, (width - crop) // 2
        rows, cols = slice(top, top + (crop or height)), slice(left, left + (crop or width))
        pixels = images[i, :, rows, cols].astype(np.float32)
        if mean is not None:
            pixels = pixels - mean[:, rows, cols]
        elif len(values):
            pixels = pixels - values.reshape(-1, 1, 1)
        pixels = pixels * np.float32(config.scale)
        out[i] = pixels[:, :, ::-1] if mirror else pixels
    return out


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """libpng's RGB->gray as OpenCV's imread(GRAYSCALE) gets it for PNG (uint8 in and out)."""
    r, g, b = (rgb[..., k].astype(np.int64) for k in range(3))
    gray = (9797 * r + 19234 * g + 3737 * b) >> 15
    return np.where((r == g) & (r == b), r, gray).astype(np.uint8)


def _linear_taps(dst: int, src: int, *, clamp: bool = True) -> list[tuple[int, int, int]]:
    # OpenCV INTER_LINEAR: half-pixel centres, weights rounded to 1/2048. Columns past the
    # edges are clamped to the edge pixel (weights 1, 0); rows are not (``clamp=False``):
    # OpenCV keeps the row weights and reads the edge row twice (rows clipped).
    scale, taps = src / dst, []
    for d in range(dst):
        f = np.float32((d + 0.5) * scale - 0.5)
        s = int(np.floor(f))
        f = np.float32(f - s)
        if clamp and s < 0:
            s, f = 0, np.float32(0)
        if clamp and s >= src - 1:
            s, f = src - 1, np.float32(0)
        taps.append((s, int(np.rint((np.float32(1) - f) * 2048)), int(np.rint(f * 2048))))
    return taps


def resize_linear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenCV's cv::resize(INTER_LINEAR) of a uint8 (H, W) or (H, W, C) image."""
    src_h, src_w = image.shape[:2]
    img = image.astype(np.int64)
    xs = _linear_taps(width, src_w)
    ys = _linear_taps(height, src_h, clamp=False)
    idx = np.array([s for s, _, _ in xs])
    nxt = np.minimum(idx + 1, src_w - 1)
    a0 = np.array([a for _, a, _ in xs]).reshape((1, -1) + (1,) * (img.ndim - 2))
    a1 = np.array([a for _, _, a in xs]).reshape(a0.shape)
    rows = img[:, idx] * a0 + img[:, nxt] * a1
    out = np.empty((height, width) + image.shape[2:], dtype=np.int64)
    for dy, (s, b0, b1) in enumerate(ys):
        r0, r1 = rows[min(max(s, 0), src_h - 1)], rows[min(max(s + 1, 0), src_h - 1)]
        # The SIMD rounding of OpenCV's VResizeLinear for 8-bit output.
        out[dy] = (((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def read_image(path: str | Path, *, is_color: bool = True, new_height: int = 0,
               new_width: int = 0) -> np.ndarray:
    """An image as Caffe's ReadImageToCVMat gives it: uint8 (C, H, W), BGR channel order."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from err
    pixels = rgb[..., ::-1] if is_color else rgb_to_gray(rgb)[..., None]
    if new_height > 0 and new_width > 0:
        pixels = resize_linear(np.ascontiguousarray(pixels), new_height, new_width)
        pixels = pixels.reshape(new_height, new_width, -1)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def read_image_list(path: str | Path) -> list[tuple[str, int]]:
    """Lines "path label" of an ImageData source (split at the last space, as Caffe)."""
    entries = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise DataError(f"cannot read image list {path}: {err.strerror}") from err
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name, _, label = line.rstrip().rpartition(" ")
        if not name or not label.lstrip("-").isdigit():
            raise DataError(f"{path}:{number}: expected 'path label', got {line!r}")
        entries.append((name, int(label)))
    return entries


def image_data_batch(layer: Any, *, folder: Path, train: bool = False, start: int = 0,
                     rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One batch of an ImageData layer: (data float32 (N, C, H, W), labels float32 (N,)).

    Paths in the layer are relative to ``folder`` (the prototxt's folder); entries are read
    in list order from ``start``, cycling. Caffe's ``shuffle`` uses its own RNG and is not
    reproduced: shuffle here with ``rng`` before calling if needed.
    """
    p = layer.image_data_param
    entries = read_image_list(folder / p.source)
    if not entries:
        raise DataError(f"image list {folder / p.source} is empty")
    root = folder / p.root_folder
    picked = [entries[(start + i) % len(entries)] for i in range(p.batch_size)]
    images = [read_image(root / name, is_color=p.is_color, new_height=p.new_height,
                         new_width=p.new_width) for name, _ in picked]
    shapes = {img.shape for img in images}
    if len(shapes) != 1:
        raise DataError(f"images differ in size {sorted(shapes)}; set new_height/new_width")
    config = TransformConfig.from_proto(layer.transform_param, folder=folder)
    data = transform_batch(np.stack(images), config, train=train, rng=rng)
    return data, np.array([label for _, label in picked], dtype=np.float32)


def data_layer_transform(layers: Sequence[Any], *, folder: Path) -> TransformConfig | None:
    """The TransformConfig of the first data layer among ``layers`` (None if it has none)."""
    for layer in layers:
        if layer.HasField("transform_param"):
            return TransformConfig.from_proto(layer.transform_param, folder=folder)
    return None
