"""ISIC 2017 training images with a melanoma column only: ISIC-2017_Training_Data/ + ISIC-2017_Training_Classes.csv.

A public copy of the 2000 ISIC 2017 training images (e.g. resized to
256x256) labels them image_id,melanoma (1.0 / 0.0) and does not say which
of the others are nevi and which seborrheic keratoses, so it supplies the
``melanoma`` scheme only. Detected where the official Part 3 file and the
Part 1 masks are absent (those make it ``isic2017_part3`` / ``isic2017``).
"""
import os

from skinlesion.layouts.base import Scan
from skinlesion.layouts.files import find_label_file, list_images, unique_stems, unwrap_dir
from skinlesion.layouts.isic import ISIC_DATA_DIR
from skinlesion.layouts.isic2017_part3 import has_data_folder, has_part1_masks, has_part3_labels
from skinlesion.layouts.labelonly import add_labelled_images, read_label_columns
from skinlesion.layouts.registry import Layout, register

CLASSES_CSV = "ISIC-2017_Training_Classes.csv"
TRAINING_DATA = ISIC_DATA_DIR["isic2017"].format("Training")


def detect(directory, names):
    """ISIC-2017_Training_Data/ and ISIC-2017_Training_Classes.csv, without Part 3 CSVs or Part 1 masks."""
    return (has_data_folder(names, ("Training",)) and not has_part1_masks(names)
            and find_label_file(directory, CLASSES_CSV) is not None and not has_part3_labels(directory))


def _melanoma_labels(scan, path):
    """{stem: ("melanoma" | "not_melanoma" | None, note, row)} from the image_id,melanoma CSV."""
    labels = {}
    for row_no, (stem, value) in read_label_columns(scan, path, ("image_id", "melanoma")):
        try:
            labels[stem] = ("melanoma" if float(value) >= 0.5 else "not_melanoma", None, row_no)
        except ValueError:
            labels[stem] = (None, f"{CLASSES_CSV} row {row_no}: unreadable melanoma value {value!r}", row_no)
    return labels


def scan(root, subsets=None):
    """The training images with their melanoma labels; no masks. subsets: ignored (no official splits)."""
    found = Scan("isic2017_classes", root)
    path = find_label_file(root, CLASSES_CSV)
    labels = _melanoma_labels(found, path) if path else {}
    images = list_images(unwrap_dir(os.path.join(root, TRAINING_DATA)))
    add_labelled_images(found, "isic2017_classes", dict(unique_stems(found, images)), labels, path,
                        f"{TRAINING_DATA}/")
    return found


register(Layout(name="isic2017_classes",
                expected=f"{TRAINING_DATA}/ + {CLASSES_CSV} (image_id,melanoma)",
                detect=detect, scan=scan, has_masks=False))
