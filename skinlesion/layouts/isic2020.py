"""ISIC 2020 (SIIM-ISIC melanoma): train/ (or jpeg/train/) JPEGs + train.csv with image_name, patient_id, target.

target 1 is melanoma, 0 is not (schemes.RAW_DIAGNOSIS["isic2020"]); images
group by patient_id. The ISIC archive's own names are read too:
ISIC_2020_Training_JPEG/train/ + ISIC_2020_Training_GroundTruth(_v2).csv.
DICOM files beside the JPEGs are not images here and are ignored. Only the
training set has public labels, so there is no official split.
"""
import csv
import os

from skinlesion.layouts.base import Scan
from skinlesion.layouts.files import list_images, unique_stems
from skinlesion.layouts.labelonly import add_labelled_images, read_label_columns
from skinlesion.layouts.registry import Layout, register

ISIC2020_LABELS = ("ISIC_2020_Training_GroundTruth_v2.csv", "ISIC_2020_Training_GroundTruth.csv", "train.csv")
ISIC2020_IMAGES = (os.path.join("jpeg", "train"), "train", os.path.join("ISIC_2020_Training_JPEG", "train"),
                   "ISIC_2020_Training_JPEG")


def _has_columns(path, columns):
    """True when the CSV at ``path`` has a header naming all ``columns`` (case-insensitive)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = {cell.strip().lower() for cell in next(csv.reader(handle), [])}
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return set(columns) <= header


def detect(directory, names):
    """A label CSV with image_name and target columns beside one of the image folders."""
    label = next((name for name in ISIC2020_LABELS if name in names), None)
    return (label is not None and any(os.path.isdir(os.path.join(directory, d)) for d in ISIC2020_IMAGES)
            and _has_columns(os.path.join(directory, label), ("image_name", "target")))


def scan(root, subsets=None):
    """The training JPEGs with target labels and patient ids; no masks. subsets: ignored."""
    found = Scan("isic2020", root)
    path = next((os.path.join(root, n) for n in ISIC2020_LABELS if os.path.isfile(os.path.join(root, n))), None)
    labels, groups = {}, {}
    if path:
        for row_no, (stem, target, patient) in read_label_columns(found, path, ("image_name", "target"),
                                                                  ("patient_id",)):
            labels[stem] = (target or None, None, row_no)
            if patient:
                groups[stem] = patient
    folder = next((d for d in ISIC2020_IMAGES if list_images(os.path.join(root, d))), ISIC2020_IMAGES[0])
    images = list_images(os.path.join(root, folder))
    add_labelled_images(found, "isic2020", dict(unique_stems(found, images)), labels, path, f"{folder}/", groups)
    return found


register(Layout(name="isic2020",
                expected="train/ (or jpeg/train/) *.jpg + train.csv (image_name,patient_id,...,target)",
                detect=detect, scan=scan, has_masks=False, has_groups=True, group_key="patient_id"))
