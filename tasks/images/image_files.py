"""Classification on images read from files (an image folder or CIFAR binary batches): the real-data
counterpart of the procedural upstream task, with the same data-fraction knob.
"""
from __future__ import annotations

import gin
import numpy as np

from engine.errors import require
from tasks.images.byte_images import ByteImageClassification
from tasks.images.sources.files import check_format, read_images, require_same_classes


@gin.configurable
class ImageFilesClassification(ByteImageClassification):
    """Splits 'train' (the first `data_fraction` of a seeded permutation of `train_path`) and
    'eval' (all of `eval_path`). `file_format`: 'folder', 'cifar10', 'cifar100' (fine labels) or
    'cifar100_coarse'. Both paths must hold the same classes (folders: the same class folder
    names), and num_classes is their count (CIFAR: 10, 100 or 20); unreadable files, bad labels
    and mismatched sizes are ConfigErrors naming the file (tasks/images/sources/files.py).

        train.task = @ImageFilesClassification()
        ImageFilesClassification.train_path = '~/data/cifar-10-batches-bin/data_batch_1.bin'
        ImageFilesClassification.eval_path = '~/data/cifar-10-batches-bin/test_batch.bin'
        ImageFilesClassification.file_format = 'cifar10'
    """

    def __init__(self, *, train_path: str = gin.REQUIRED, eval_path: str = gin.REQUIRED,
                 file_format: str = "folder", image_size: int | None = None, data_fraction: float = 1.0,
                 split_seed: int = 0) -> None:
        super().__init__()
        check_format(file_format, "ImageFilesClassification.file_format")
        require(0 < data_fraction <= 1,
                f"ImageFilesClassification.data_fraction must be in (0, 1], got {data_fraction!r}")
        images, labels, classes = read_images(train_path, file_format, image_size)
        keep = np.random.default_rng(split_seed).permutation(len(labels))[:max(1, int(round(data_fraction * len(labels))))]
        eval_images, eval_labels, eval_classes = read_images(eval_path, file_format, image_size)
        require_same_classes("ImageFilesClassification", (train_path, classes), (eval_path, eval_classes))
        require(eval_images.shape[1:] == images.shape[1:],
                f"ImageFilesClassification: the images of {train_path!r} are {images.shape[1:]} but those of "
                f"{eval_path!r} are {eval_images.shape[1:]}; set image_size")
        self.splits = {"train": {"image": images[np.sort(keep)], "label": labels[np.sort(keep)]},
                       "eval": {"image": eval_images, "label": eval_labels}}
        self.num_classes = len(classes)
