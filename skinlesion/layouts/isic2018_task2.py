"""ISIC 2018 Task 2 (lesion attribute detection): the Task 1-2 images with five attribute masks each.

    ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg
    ISIC2018_Task2_Training_GroundTruth_v3/ISIC_0000000_attribute_globules.png
        (and _milia_like_cyst, _negative_network, _pigment_network, _streaks)
    ISIC2018_Task1_Training_GroundTruth/ISIC_0000000_segmentation.png   (optional)

Validation and Test folders are read for the "val" and "test" subsets as
the isic2018 layout reads them; the ground-truth folder may carry a version
suffix (``_v3``, ``_v2``) or none (the newest one present is read).

Each record has ``criteria`` {"task2_<attribute>": mask non-empty} and
``attribute_masks`` {attribute: path} for every attribute file present and
usable, and ``mask_path``: the Task 1 lesion mask when the Task 1 ground
truth folder is there and holds a mask of the image's size, else None.
An attribute file missing for an image leaves that criterion unknown (one
line per image naming the attributes, ``Scan.warn``); an unreadable or
wrong-size attribute mask is skipped (one line, counted in ``skipped``) and
its criterion is unknown. An image with no usable attribute mask and no
lesion mask is skipped. Presence is read by decoding each attribute mask
once at scan time (the ISIC rule, grey > 128).

Detection: this layout reads the same input folders as the ISIC 2018 Task 1
layout (``isic2018``), which detects every such tree. So that reading a
full ISIC 2018 download for lesions stays as it was (Task 1 masks, no
"several datasets" warning), this layout defers to ``isic2018``
(``Layout.defers_to``) and is read when asked for: LesionDataset picks it
for ``classes="isic2018_attributes"`` (the attribute masks as instances),
and ``layout="isic2018_task2"`` picks it by name (with classes="lesion" it
then reads the Task 1 masks of the images that have them).
"""
import os
import re

from skinlesion.criteria import TASK2_ATTRIBUTES
from skinlesion.layouts.base import Scan
from skinlesion.layouts.files import (check_image, find_image_file, image_size, index_files, list_images,
                                      read_mask_bool, unique_stems, unwrap_dir)
from skinlesion.layouts.isic import ISIC_DATA_DIR, ISIC_MASK_DIR, ISIC_SPLITS
from skinlesion.layouts.registry import Layout, register

LAYOUT = "isic2018_task2"
TASK2_GROUND_TRUTH = re.compile(r"ISIC2018_Task2_(\w+?)_GroundTruth(?:_v(\d+))?")
TASK2_EXPECTED = ("ISIC2018_Task1-2_{Training,Validation,Test}_Input/ + ISIC2018_Task2_{...}_GroundTruth_v3/"
                  "ISIC_xxxxxxx_attribute_<globules|milia_like_cyst|negative_network|pigment_network|streaks>.png "
                  "(+ ISIC2018_Task1_{...}_GroundTruth/)")


def attribute_file_name(stem, attribute):
    """The official file name of an attribute mask: ISIC_0000000_attribute_globules.png."""
    return f"{stem}_attribute_{attribute}.png"


def ground_truth_folders(names):
    """{split folder word ("Training", ...): Task 2 ground-truth folder name}; the newest version wins."""
    best = {}
    for name in names:
        match = TASK2_GROUND_TRUTH.fullmatch(name)
        if match:
            version = int(match.group(2) or 0)
            if match.group(1) not in best or version > best[match.group(1)][0]:
                best[match.group(1)] = (version, name)
    return {split: name for split, (_, name) in best.items()}


def detect(directory, names):
    """True when a Task 1-2 input folder and a Task 2 ground-truth folder are among ``names``."""
    splits = ground_truth_folders(names)
    return any(ISIC_DATA_DIR["isic2018"].format(split) in names for split in splits)


def _mask_fits(scan, path, size, kind, consequence):
    """Whether the mask at ``path`` has a readable header of the image's ``size``; one skip line when not.

    kind: "attribute mask" or "mask", for the line; consequence: what it means for the image.
    """
    try:
        width, height = image_size(path)
    except ValueError as err:
        scan.skip(path, f"{kind} {err}; {consequence}")
        return False
    if (width, height) != tuple(size):
        scan.skip(path, f"{kind} size {width}x{height} differs from image size {size[0]}x{size[1]}; {consequence}")
        return False
    return True


def _attribute(scan, stem, size, path, attribute):
    """Whether the attribute mask at ``path`` is non-empty; None after one skip line when unusable."""
    unknown = f"{attribute} left unknown for {stem}"
    if not _mask_fits(scan, path, size, "attribute mask", unknown):
        return None
    try:
        return bool(read_mask_bool(path).any())
    except ValueError as err:
        scan.skip(path, f"attribute mask {err}; {unknown}")
        return None


def _lesion_mask(scan, masks, stem, size):
    """The Task 1 mask path of ``stem`` when present and of the image's size, else None (one line if not)."""
    path = find_image_file(masks, f"{stem}_segmentation", extensions=(".png",))
    if path is None or not _mask_fits(scan, path, size, "mask", f"{stem} keeps its attribute masks only"):
        return None
    return path


def scan_task2(root, subsets=("train", "val", "test")):
    """Scan an ISIC 2018 Task 2 tree for the official splits behind ``subsets`` ("train"/"val"/"test")."""
    scan = Scan(LAYOUT, root, official_splits=True)
    names = set(os.listdir(root))
    truth_dirs = ground_truth_folders(names)
    seen = {}
    for subset in subsets:
        for split_name in ISIC_SPLITS["isic2018"].get(subset, ()):
            data_dir = ISIC_DATA_DIR["isic2018"].format(split_name)
            if data_dir not in names:
                continue
            truth_name = truth_dirs.get(split_name)
            if truth_name is None:
                scan.warn(os.path.join(root, data_dir), f"no ISIC2018_Task2_{split_name}_GroundTruth folder "
                                                        f"beside it; its images have no attribute masks")
            attribute_files = index_files(unwrap_dir(os.path.join(root, truth_name))) if truth_name else {}
            masks = index_files(unwrap_dir(os.path.join(root, ISIC_MASK_DIR["isic2018"].format(split_name))))
            images = list_images(unwrap_dir(os.path.join(root, data_dir)))
            for stem, image_path in unique_stems(scan, images, seen, name_first=False):
                size = check_image(scan, image_path)
                if size is None:
                    continue
                criteria, paths, missing = {}, {}, []
                for attribute in TASK2_ATTRIBUTES:
                    path = attribute_files.get(attribute_file_name(stem, attribute).lower())
                    if path is None:
                        missing.append(attribute)
                        continue
                    present = _attribute(scan, stem, size, path, attribute)
                    if present is not None:
                        criteria[f"task2_{attribute}"] = present
                        paths[attribute] = path
                if truth_name and missing:
                    scan.warn(image_path, f"no attribute file for {', '.join(missing)} in {truth_name}/ "
                                          f"(expected {attribute_file_name(stem, '<name>')}); left unknown")
                mask_path = _lesion_mask(scan, masks, stem, size)
                if not paths and mask_path is None:
                    scan.skip(image_path, f"no usable attribute mask (expected {truth_name or 'a Task 2 folder'}/"
                                          f"{attribute_file_name(stem, '<name>')}) and no lesion mask")
                    continue
                scan.add(stem, image_path, mask_path, size, split=subset, criteria=criteria,
                         attribute_masks=paths)
    return scan


register(Layout(name=LAYOUT, expected=TASK2_EXPECTED, detect=detect, scan=scan_task2, has_labels=False,
                defers_to=("isic2018",)))
