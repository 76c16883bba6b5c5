"""ISIC 2018 Task 3 (the HAM10000 images): ISIC2018_Task3_{Training,Validation,Test}_Input/ + one-hot CSVs.

Labels: ISIC2018_Task3_<split>_GroundTruth/ISIC2018_Task3_<split>_GroundTruth.csv
(or that CSV beside the input folders), columns image,MEL,NV,BCC,AKIEC,BKL,DF,VASC.
Groups: lesion_id from ISIC2018_Task3_Training_LesionGroupings.csv when it
is there (image,lesion_id,...), so several images of one lesion share a subset
when a split is carved; each official folder is its own subset.
"""
import os

from skinlesion import schemes
from skinlesion.layouts.base import Scan
from skinlesion.layouts.files import find_label_file, list_images, unique_stems, unwrap_dir
from skinlesion.layouts.labelonly import add_labelled_images, group_ids, one_hot_labels
from skinlesion.layouts.registry import Layout, register

TASK3_SPLITS = {"train": "Training", "val": "Validation", "test": "Test"}
TASK3_INPUT = "ISIC2018_Task3_{}_Input"
TASK3_LABELS = "ISIC2018_Task3_{}_GroundTruth.csv"
TASK3_GROUPINGS = "ISIC2018_Task3_Training_LesionGroupings.csv"


def detect(directory, names):
    """True when an ISIC 2018 Task 3 input folder is among ``names``."""
    return any(TASK3_INPUT.format(split) in names for split in TASK3_SPLITS.values())


def _groupings(scan, root):
    """{image: lesion_id} from the lesion groupings CSV beside the folders or in the training labels folder."""
    path = (find_label_file(root, TASK3_GROUPINGS)
            or find_label_file(os.path.join(root, TASK3_LABELS.format("Training")[:-4]), TASK3_GROUPINGS))
    return group_ids(scan, path, "image", "lesion_id") if path else {}


def scan(root, subsets=("train", "val", "test")):
    """Images of the official folders behind ``subsets`` with their Task 3 labels; no masks."""
    found = Scan("isic2018_task3", root, official_splits=True)
    names = set(os.listdir(root))
    groups = _groupings(found, root)
    codes = schemes.SCHEMES["isic2018"]
    seen = {}
    for subset in subsets:
        folder = TASK3_INPUT.format(TASK3_SPLITS[subset])
        if folder not in names:
            continue
        path = find_label_file(root, TASK3_LABELS.format(TASK3_SPLITS[subset]))
        labels = one_hot_labels(found, path, "image", codes) if path else {}
        images = list_images(unwrap_dir(os.path.join(root, folder)))
        present = dict(unique_stems(found, images, seen, name_first=False))
        add_labelled_images(found, "isic2018", present, labels, path, f"{folder}/", groups, split=subset)
    return found


register(Layout(name="isic2018_task3",
                expected="ISIC2018_Task3_{Training,Validation,Test}_Input/ + "
                         "ISIC2018_Task3_{...}_GroundTruth/ISIC2018_Task3_{...}_GroundTruth.csv "
                         "(+ ISIC2018_Task3_Training_LesionGroupings.csv)",
                detect=detect, scan=scan, has_masks=False, has_groups=True, group_key="lesion_id"))
