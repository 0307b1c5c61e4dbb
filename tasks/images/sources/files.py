"""Images from files, for real upstream or downstream data: an image folder (one sub-folder per
class, any format Pillow reads) or CIFAR-10 / CIFAR-100 binary batches, read into uint8 arrays
(N, 3, H, W) with integer labels. Nothing is downloaded: point the paths at data on disk.
"""
from __future__ import annotations

import functools
import glob
import os

import numpy as np

from engine.errors import ConfigError, require

FORMATS = ("folder", "cifar10", "cifar100", "cifar100_coarse")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".webp", ".tif", ".tiff")
CIFAR_PIXELS = 3 * 32 * 32
# format -> (label bytes per record, which of them is the label)
CIFAR_LABELS = {"cifar10": (1, 0), "cifar100": (2, 1), "cifar100_coarse": (2, 0)}


def check_format(file_format: str, where: str) -> None:
    require(file_format in FORMATS, f"{where} must be one of {FORMATS}, got {file_format!r}")


def read_cifar_batches(paths: list[str], *, label_bytes: int = 1, label_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (N, 3, 32, 32), labels) from CIFAR binary batch files: each record is the label
    byte(s) (CIFAR-100: coarse, then fine) followed by 1,024 red, green and blue pixels."""
    record = label_bytes + CIFAR_PIXELS
    parts = []
    for path in paths:
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % record:
            kind = "CIFAR-10" if label_bytes == 1 else "CIFAR-100"
            raise ConfigError(f"{path} is not a {kind} binary batch ({label_bytes} label byte(s); "
                              f"{raw.size} bytes, not a multiple of {record})")
        parts.append(raw.reshape(-1, record))
    records = np.concatenate(parts)
    return (np.ascontiguousarray(records[:, label_bytes:].reshape(-1, 3, 32, 32)),
            records[:, label_index].astype(np.int64))


def read_image_folder(root: str, *, image_size: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 (N, 3, H, W), labels, class names) from `root/<class>/<image>`; classes in sorted
    order. Images are converted to RGB and resized to `image_size` (bilinear) when it is given,
    otherwise they must all have the same size."""
    from PIL import Image
    require(os.path.isdir(root), f"image folder {root!r} does not exist")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    require(len(classes) >= 2, f"image folder {root!r} needs one sub-folder per class (at least two), found {classes}")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(f for f in os.listdir(os.path.join(root, name)) if f.lower().endswith(IMAGE_EXTENSIONS))
        require(len(files) > 0, f"class folder {os.path.join(root, name)!r} holds no images {IMAGE_EXTENSIONS}")
        for file in files:
            with Image.open(os.path.join(root, name, file)) as image:
                image = image.convert("RGB")
                if image_size is not None and image.size != (image_size, image_size):
                    image = image.resize((image_size, image_size), Image.BILINEAR)
                images.append(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))
            labels.append(label)
    shapes = {im.shape for im in images}
    require(len(shapes) == 1, f"images in {root!r} have different sizes {sorted(shapes)[:3]}; set an image_size")
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes


@functools.lru_cache(maxsize=8)
def read_images(path: str, file_format: str, image_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, labels) from a folder of class folders, or from CIFAR batches: one file or
    every `*.bin` file of a directory (sorted)."""
    check_format(file_format, "file_format")
    path = os.path.expanduser(path)
    if file_format == "folder":
        images, labels, _ = read_image_folder(path, image_size=image_size)
        return images, labels
    files = sorted(glob.glob(os.path.join(path, "*.bin"))) if os.path.isdir(path) else [path]
    require(len(files) > 0 and all(os.path.isfile(f) for f in files),
            f"no CIFAR binary batches at {path!r} (give a .bin file or a folder of them)")
    label_bytes, label_index = CIFAR_LABELS[file_format]
    images, labels = read_cifar_batches(files, label_bytes=label_bytes, label_index=label_index)
    if image_size is not None and image_size != 32:
        from tasks.images.sources.transforms import resize
        images = np.round(resize(images.astype(np.float32) / 255.0, image_size) * 255).astype(np.uint8)
    return images, labels
