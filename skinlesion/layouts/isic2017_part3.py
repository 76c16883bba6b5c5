"""ISIC 2017 Part 3 read without Part 1 masks: ISIC-2017_{Training,Validation,Test_v2}_Data/ + Part3 CSVs.

The same tree as the ``isic2017`` segmentation layout, so it is detected
only where no ISIC-2017_*_Part1_GroundTruth/ folder is (a tree with its
masks stays ``isic2017``, which also carries these labels).
"""
from skinlesion.layouts.files import find_label_file
from skinlesion.layouts.isic import ISIC_DATA_DIR, ISIC_LABEL_CSV, ISIC_MASK_DIR, ISIC_SPLITS, scan_isic
from skinlesion.layouts.registry import Layout, register

SPLIT_FOLDERS = tuple(name for options in ISIC_SPLITS["isic2017"].values() for name in options)


def has_part1_masks(names):
    """True when an ISIC 2017 Part 1 mask folder is among ``names``."""
    return any(ISIC_MASK_DIR["isic2017"].format(split) in names for split in SPLIT_FOLDERS)


def has_data_folder(names, splits=SPLIT_FOLDERS):
    """True when an ISIC 2017 image folder of one of ``splits`` is among ``names``."""
    return any(ISIC_DATA_DIR["isic2017"].format(split) in names for split in splits)


def has_part3_labels(directory):
    """True when ``directory`` holds an ISIC 2017 Part 3 ground-truth CSV of any split."""
    return any(find_label_file(directory, ISIC_LABEL_CSV["isic2017"].format(split)) for split in SPLIT_FOLDERS)


def detect(directory, names):
    """ISIC 2017 image folders and Part 3 CSVs, and no Part 1 masks."""
    return has_data_folder(names) and not has_part1_masks(names) and has_part3_labels(directory)


def scan(root, subsets=("train", "val", "test")):
    """Images of the official folders behind ``subsets`` with their Part 3 labels; no masks."""
    found = scan_isic("isic2017", root, subsets, with_masks=False)
    found.layout = "isic2017_part3"
    return found


register(Layout(name="isic2017_part3",
                expected="ISIC-2017_{Training,Validation,Test_v2}_Data/ + "
                         "ISIC-2017_{...}_Part3_GroundTruth.csv (image_id,melanoma,seborrheic_keratosis)",
                detect=detect, scan=scan, has_masks=False))
