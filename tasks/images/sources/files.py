"""Images from files, for real upstream or downstream data: an image folder (one sub-folder per
class, any format Pillow reads) or CIFAR-10 / CIFAR-100 binary batches, read into uint8 arrays
(N, 3, H, W) with integer labels. Nothing is downloaded: point the paths at data on disk.

A file that is missing, truncated or corrupt, a label outside the format's classes and an image
of the wrong size or bit depth are ConfigErrors naming the file (and the record), raised while
reading, before training starts (rules in each reader's docstring).
"""
from __future__ import annotations

import functools
import glob
import logging
import os
from typing import Sequence

import numpy as np

from engine.errors import ConfigError, require
from engine.file_errors import READ_ERRORS, file_error, reading, reason, require_file

log = logging.getLogger("tasks.images")

FORMATS = ("folder", "cifar10", "cifar100", "cifar100_coarse")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".webp", ".tif", ".tiff")
CIFAR_PIXELS = 3 * 32 * 32
# format -> (label bytes per record, which of them is the label)
CIFAR_LABELS = {"cifar10": (1, 0), "cifar100": (2, 1), "cifar100_coarse": (2, 0)}
CIFAR_CLASSES = {"cifar10": 10, "cifar100": 100, "cifar100_coarse": 20}
# label bytes per record -> (name, class count) of each: CIFAR-10's label; CIFAR-100's coarse, then fine
CIFAR_LABEL_BYTES = {1: (("label", 10),), 2: (("coarse label", 20), ("fine label", 100))}
#: Pillow modes with 8 bits per channel. Converting a 16-bit or float image ('I;16', 'I', 'F') to
#: 8-bit RGB clips instead of scaling, so such images are refused rather than silently whitened.
EIGHT_BIT_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


def read_image(path: str, mode: str, *, modes: Sequence[str] = EIGHT_BIT_MODES):
    """The image at `path`, decoded in full (so a truncated file fails here) and converted to
    `mode`. A missing, truncated or corrupt file, or one stored in a mode outside `modes`, is a
    ConfigError naming the file."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            if image.mode not in modes:
                wanted = ("8 bits per channel" if tuple(modes) == EIGHT_BIT_MODES
                          else " or ".join(repr(m) for m in modes))
                raise file_error(path, f"holds a {image.mode!r} image; expected {wanted}")
            image.load()
            return image.convert(mode)
    except ConfigError:
        raise
    except (*READ_ERRORS, Image.DecompressionBombError) as error:
        if isinstance(error, FileNotFoundError):
            raise file_error(path, "no such file") from error
        raise file_error(path, f"is not a readable image ({reason(error)}); truncated or corrupt?") from error


def check_format(file_format: str, where: str) -> None:
    require(file_format in FORMATS, f"{where} must be one of {FORMATS}, got {file_format!r}")


def read_cifar_batches(paths: list[str], *, label_bytes: int = 1, label_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (N, 3, 32, 32), labels) from CIFAR binary batch files: each record is the label
    byte(s) (CIFAR-100: coarse, then fine) followed by 1,024 red, green and blue pixels.

    Refused, naming the file: a missing one; a size that is not a whole number of records (a
    truncated copy, or CIFAR-100 read as CIFAR-10); and, naming the first such record, a label
    byte outside its classes (CIFAR-10 0..9; CIFAR-100 coarse 0..19, fine 0..99), which would
    otherwise train on a wrong label.
    """
    record = label_bytes + CIFAR_PIXELS
    kind = "CIFAR-10" if label_bytes == 1 else "CIFAR-100"
    parts = []
    for path in paths:
        require_file(path, f"a {kind} binary batch")
        with reading(path):
            raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % record:
            raise file_error(path, f"is not a {kind} binary batch ({label_bytes} label byte(s) + {CIFAR_PIXELS:,} "
                             f"pixels = {record:,} bytes a record): {raw.size:,} bytes are {raw.size // record:,} "
                             f"records and {raw.size % record:,} bytes over; truncated or another format?")
        records = raw.reshape(-1, record)
        for byte, (name, classes) in enumerate(CIFAR_LABEL_BYTES[label_bytes]):
            bad = np.flatnonzero(records[:, byte] >= classes)
            if bad.size:
                raise file_error(path, f"the {name} {records[bad[0], byte]} is outside 0..{classes - 1} "
                                 f"({bad.size:,} record(s) like it); not a {kind} batch?", record=int(bad[0]))
        parts.append(records)
    records = np.concatenate(parts)
    return (np.ascontiguousarray(records[:, label_bytes:].reshape(-1, 3, 32, 32)),
            records[:, label_index].astype(np.int64))


def read_image_folder(root: str, *, image_size: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 (N, 3, H, W), labels, class names) from `root/<class>/<image>`; classes in sorted
    order, so a label is the index of its folder's name.

    Images are converted to RGB and resized to `image_size` (bilinear) when it is given; without
    it they must all have the size of the first, and the first that does not is a ConfigError
    naming both files. A truncated or corrupt image, or a 16-bit / float one (converting it would
    clip), is a ConfigError naming the file. Names starting with '.' are ignored (a stray
    `.ipynb_checkpoints` folder would otherwise become a class); other files without an image
    extension are skipped, and their count is logged.
    """
    from PIL import Image
    require(os.path.isdir(root), f"image folder {root!r} does not exist")
    classes = sorted(d for d in os.listdir(root) if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))
    require(len(classes) >= 2, f"image folder {root!r} needs one sub-folder per class (at least two), found {classes}")
    images, labels, skipped, first = [], [], 0, None
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        entries = sorted(f for f in os.listdir(folder) if not f.startswith("."))
        files = [f for f in entries if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f))]
        skipped += len(entries) - len(files)
        require(len(files) > 0, f"class folder {folder!r} holds no images {IMAGE_EXTENSIONS}")
        for file in files:
            path = os.path.join(folder, file)
            image = read_image(path, "RGB")
            if image_size is not None and image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
            if first is None:
                first = (path, pixels.shape)
            elif pixels.shape != first[1]:
                raise file_error(path, f"is {pixels.shape[2]}x{pixels.shape[1]} pixels but {first[0]} is "
                                 f"{first[1][2]}x{first[1][1]}; images must share one size, or set an image_size")
            images.append(pixels)
            labels.append(label)
    if skipped:
        log.warning("image folder %s: skipped %d file(s) without an image extension %s", root, skipped,
                    IMAGE_EXTENSIONS)
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes


@functools.lru_cache(maxsize=8)
def read_images(path: str, file_format: str, image_size: int | None = None) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(uint8 images, labels, class names) from a folder of class folders, or from CIFAR
    batches: one file or every `*.bin` file of a directory (sorted); CIFAR's classes are named
    by their numbers ('0' .. '9', '0' .. '99', '0' .. '19')."""
    check_format(file_format, "file_format")
    path = os.path.expanduser(path)
    if file_format == "folder":
        images, labels, classes = read_image_folder(path, image_size=image_size)
        return images, labels, tuple(classes)
    files = sorted(glob.glob(os.path.join(path, "*.bin"))) if os.path.isdir(path) else [path]
    require(len(files) > 0 and all(os.path.isfile(f) for f in files),
            f"no CIFAR binary batches at {path!r} (give a .bin file or a folder of them)")
    label_bytes, label_index = CIFAR_LABELS[file_format]
    images, labels = read_cifar_batches(files, label_bytes=label_bytes, label_index=label_index)
    if image_size is not None and image_size != 32:
        from tasks.images.sources.transforms import resize
        images = np.round(resize(images.astype(np.float32) / 255.0, image_size) * 255).astype(np.uint8)
    return images, labels, tuple(str(c) for c in range(CIFAR_CLASSES[file_format]))


def require_same_classes(owner: str, first: tuple[str, tuple], second: tuple[str, tuple]) -> None:
    """Two folders (path, class names) read for one task must name the same classes: labels are
    indices in sorted name order, so a class missing from one would shift every later label."""
    (first_path, first_classes), (second_path, second_classes) = first, second
    if first_classes != second_classes:
        only = sorted(set(first_classes) ^ set(second_classes))
        raise ConfigError(f"{owner}: {first_path!r} has classes {list(first_classes)[:8]} but {second_path!r} has "
                          f"{list(second_classes)[:8]}" + (f" (only in one: {only[:5]})" if only else "")
                          + "; labels are class indices in sorted order, so both must hold the same class folders")
