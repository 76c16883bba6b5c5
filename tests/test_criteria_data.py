"""Dermoscopic criteria as data: PH2's sheet, labels.csv columns, the ISIC 2018 Task 2 layout and its instances."""
import csv
import logging
import os
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from skinlesion import DatasetError, LesionConfig, LesionDataset, SchemeError
from skinlesion.labelled import load_labelled
from skinlesion.layouts import detect_layouts, resolve_layout, scan_layout
from test_layouts import write_ph2_sheet

# --------------------------------------------------------------------------- PH2

# The sheet's columns F-Q for three images, as in the real PH2_dataset.xlsx.
PH2_ROWS = {
    "IMD002": (1, "AT", "A", "A", "A", "A", None, None, "X", "X", None, None),
    "IMD048": (1, "AT", "AT", "A", "A", "A", None, None, "X", None, None, None),
    "IMD160": (0, "T", "T", "A", "A", "A", None, None, "X", "X", None, None),
}
PH2_CRITERIA = {
    "IMD002": {"asymmetry": 1, "pigment_network": "atypical", "dots_globules": "absent", "streaks": False,
               "regression_areas": False, "blue_whitish_veil": False,
               "colours": frozenset({"light_brown", "dark_brown"})},
    "IMD048": {"asymmetry": 1, "pigment_network": "atypical", "dots_globules": "atypical", "streaks": False,
               "regression_areas": False, "blue_whitish_veil": False, "colours": frozenset({"light_brown"})},
    "IMD160": {"asymmetry": 0, "pigment_network": "typical", "dots_globules": "typical", "streaks": False,
               "regression_areas": False, "blue_whitish_veil": False,
               "colours": frozenset({"light_brown", "dark_brown"})},
}


def write_ph2(root, lesion_write_pair, rows):
    """A PH2 tree at ``root`` with one case per row of ``rows`` ({name: 12 cells F-Q}); returns root."""
    for i, name in enumerate(rows):
        case = root / "PH2 Dataset images" / name
        lesion_write_pair(str(case / f"{name}_Dermoscopic_Image" / f"{name}.bmp"),
                          str(case / f"{name}_lesion" / f"{name}_lesion.bmp"), seed=500 + i)
    write_ph2_sheet(str(root / "PH2_dataset.xlsx"), [(name, "atypical") for name in rows], criteria=rows)
    return root


def test_ph2_sheet_criteria_parse_exactly(tmp_path, lesion_write_pair):
    root = write_ph2(tmp_path / "PH2Dataset", lesion_write_pair, PH2_ROWS)
    dataset = LesionDataset()
    summary = dataset.load(str(root), "all", classes="ph2")
    assert summary["images"] == 3 and not summary["skipped"]
    assert {info["stem"]: info["criteria"] for info in dataset.image_info} == PH2_CRITERIA
    items, _ = load_labelled(str(root), "all", classes="ph2")
    assert {item.image_id: item.criteria for item in items} == PH2_CRITERIA
    assert len({hash(item) for item in items}) == 3  # still hashable with a dict field


def test_ph2_bad_cell_drops_that_criterion_only(tmp_path, lesion_write_pair, caplog):
    rows = dict(PH2_ROWS)
    rows["IMD048"] = (1, "Q", "AT", "A", "A", "A", None, None, "X", None, "?!", None)
    root = write_ph2(tmp_path / "PH2Dataset", lesion_write_pair, rows)
    with caplog.at_level(logging.WARNING, logger="skinlesion.layouts"):
        scan = scan_layout("ph2", str(root))
    criteria = {r.stem: r.criteria for r in scan.records}
    assert len(criteria) == 3 and criteria["IMD002"] == PH2_CRITERIA["IMD002"]
    expected = {k: v for k, v in PH2_CRITERIA["IMD048"].items() if k not in ("pigment_network", "colours")}
    assert criteria["IMD048"] == expected
    lines = [r.getMessage() for r in caplog.records if "IMD048" in r.getMessage()]
    assert len(lines) == 2 and len(scan.warnings) == 2
    assert "PH2_dataset.xlsx: row 15 column G (Pigment Network (AT/T))" in lines[0]
    assert "column P (Blue-Gray)" in lines[1] and "colours left unknown" in lines[1]


def test_ph2_without_colour_columns_leaves_colours_unknown(tmp_path, lesion_write_pair):
    root = tmp_path / "PH2Dataset"
    lesion_write_pair(str(root / "PH2 Dataset images" / "IMD002" / "IMD002_Dermoscopic_Image" / "IMD002.bmp"),
                      str(root / "PH2 Dataset images" / "IMD002" / "IMD002_lesion" / "IMD002_lesion.bmp"))
    write_ph2_sheet(str(root / "PH2_dataset.xlsx"), [("IMD002", "common")])  # header stops at Asymmetry
    assert scan_layout("ph2", str(root)).records[0].criteria == {"asymmetry": 0}


def test_real_ph2_sheet_criteria_and_counts(lesion_real_ph2):
    scan = scan_layout("ph2", lesion_real_ph2)
    criteria = {r.stem: r.criteria for r in scan.records}
    assert len(criteria) == 200 and not scan.warnings
    for name, expected in PH2_CRITERIA.items():
        assert criteria[name] == expected, name

    def count(name):
        """How many images have each value of criterion ``name``."""
        return Counter(c[name] for c in criteria.values())

    assert count("pigment_network") == {"atypical": 116, "typical": 84}
    assert count("dots_globules") == {"absent": 87, "atypical": 59, "typical": 54}
    assert count("streaks")[True] == 30 and count("regression_areas")[True] == 25
    assert count("blue_whitish_veil")[True] == 36
    assert count("asymmetry") == {0: 117, 1: 31, 2: 52}


# --------------------------------------------------------------------------- folder labels.csv

def write_folder(root, lesion_write_pair, header, rows):
    """images/ + masks/ for rows' images and labels.csv with ``header`` and ``rows``; returns root."""
    for i, row in enumerate(rows):
        stem = row[0]
        lesion_write_pair(str(root / "images" / f"{stem}.png"), str(root / "masks" / f"{stem}.png"), seed=600 + i)
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return root


def test_folder_labels_csv_criteria_columns(tmp_path, lesion_write_pair, caplog):
    header = ["image", "label", "Asymmetry", "pigment_network", "streaks", "colours", "colour_white",
              "colour_red", "task2_globules", "notes"]
    rows = [["a", "melanoma", "2", "AT", "present", "light_brown;dark-brown", "", "", "1", "x"],
            ["b", "nevus", "", "typical", "no", "", "X", "", "", ""],
            ["c", "nevus", "3", "T", "maybe", "", "", "", "0", ""],
            ["d", "nevus", "0", "", "", "", "", "", "", ""]]
    root = write_folder(tmp_path / "folder", lesion_write_pair, header, rows)
    with caplog.at_level(logging.WARNING, logger="skinlesion.layouts"):
        dataset = LesionDataset()
        dataset.load(str(root), "all", classes="isic2017")
    criteria = {info["stem"]: info["criteria"] for info in dataset.image_info}
    assert criteria["a"] == {"asymmetry": 2, "pigment_network": "atypical", "streaks": True,
                             "colours": frozenset({"light_brown", "dark_brown"}), "task2_globules": True}
    assert criteria["b"] == {"pigment_network": "typical", "streaks": False, "colours": frozenset({"white"})}
    assert criteria["c"] == {"pigment_network": "typical", "colours": frozenset(), "task2_globules": False}
    assert criteria["d"] == {"asymmetry": 0, "colours": frozenset()}
    lines = [r.getMessage() for r in caplog.records if "labels.csv" in r.getMessage()]
    assert len(lines) == 2
    assert "row 4 column asymmetry" in lines[0] and "asymmetry left unknown for c" in lines[0]
    assert "row 4 column streaks" in lines[1]


def test_folder_without_criteria_columns_has_none(lesion_folder_root):
    dataset = LesionDataset()
    dataset.load(str(lesion_folder_root), "all", classes="isic2017")
    assert all(info["criteria"] is None for info in dataset.image_info)


# --------------------------------------------------------------------------- ISIC 2018 Task 2

TRAIN_INPUT = "ISIC2018_Task1-2_Training_Input"
TRAIN_TRUTH = "ISIC2018_Task2_Training_GroundTruth_v3"
SIZE = (48, 64)  # (H, W)


def write_attribute(folder, stem, attribute, boxes=(), size=SIZE):
    """Write folder/<stem>_attribute_<attribute>.png (0/255) with the (y1, x1, y2, x2) boxes set."""
    mask = np.zeros(size, np.uint8)
    for y1, x1, y2, x2 in boxes:
        mask[y1:y2, x1:x2] = 255
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(mask).save(os.path.join(folder, f"{stem}_attribute_{attribute}.png"))


@pytest.fixture
def task2_root(tmp_path):
    """A Task 2 tree of three training images and one validation image (ground truth without _v3).

    ISIC_0000001: globules two blobs and a 3-pixel speck, pigment network one region, the rest empty;
      it also has a Task 1 lesion mask.
    ISIC_0000002: every attribute file empty.
    ISIC_0000003: no streaks file, milia-like cysts one blob, a negative network mask of the wrong size.
    ISIC_0000004 (Validation): pigment network one region.
    """
    root = tmp_path / "ISIC2018"
    rng = np.random.default_rng(0)
    stems = {"Training": ["ISIC_0000001", "ISIC_0000002", "ISIC_0000003"], "Validation": ["ISIC_0000004"]}
    for split, names in stems.items():
        for stem in names:
            folder = root / f"ISIC2018_Task1-2_{split}_Input"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, SIZE + (3,), dtype=np.uint8)).save(folder / f"{stem}.jpg")
    truth = str(root / TRAIN_TRUTH)
    write_attribute(truth, "ISIC_0000001", "globules", [(2, 2, 8, 8), (20, 30, 26, 40), (40, 60, 43, 61)])
    write_attribute(truth, "ISIC_0000001", "pigment_network", [(10, 10, 30, 50)])
    for attribute in ("milia_like_cyst", "negative_network", "streaks"):
        write_attribute(truth, "ISIC_0000001", attribute)
    for attribute in ("globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks"):
        write_attribute(truth, "ISIC_0000002", attribute)
    write_attribute(truth, "ISIC_0000003", "globules")
    write_attribute(truth, "ISIC_0000003", "pigment_network")
    write_attribute(truth, "ISIC_0000003", "milia_like_cyst", [(5, 5, 15, 15)])
    write_attribute(truth, "ISIC_0000003", "negative_network", [(0, 0, 4, 4)], size=(20, 20))
    validation = str(root / "ISIC2018_Task2_Validation_GroundTruth")
    for attribute in ("globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks"):
        write_attribute(validation, "ISIC_0000004", attribute,
                        [(5, 5, 40, 40)] if attribute == "pigment_network" else ())
    lesion = np.zeros(SIZE, np.uint8)
    lesion[5:40, 5:55] = 255
    (root / "ISIC2018_Task1_Training_GroundTruth").mkdir()
    Image.fromarray(lesion).save(root / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000001_segmentation.png")
    return root


def by_stem(dataset):
    """{stem: image id} of a loaded dataset."""
    return {info["stem"]: image_id for image_id, info in enumerate(dataset.image_info)}


def test_task2_tree_loads_attribute_instances(task2_root, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = LesionDataset()
        summary = dataset.load(str(task2_root), "train", classes="isic2018_attributes")
    assert summary["layout"] == "isic2018_task2" and summary["images"] == 3 and summary["official_split"]
    assert dataset.class_names == ["BG", "globules", "milia_like_cyst", "negative_network", "pigment_network",
                                   "streaks"]
    assert summary["classes"] == {"globules": 1, "milia_like_cyst": 1, "negative_network": 0,
                                  "pigment_network": 1, "streaks": 0}
    # The wrong-size negative network mask is skipped and counted; the missing streaks file is one line.
    assert [s["file"].endswith("ISIC_0000003_attribute_negative_network.png") for s in summary["skipped"]] == [True]
    missing = [r.getMessage() for r in caplog.records if "no attribute file" in r.getMessage()]
    assert len(missing) == 1 and "ISIC_0000003" in missing[0] and "streaks" in missing[0]
    ids = by_stem(dataset)

    masks, class_ids = dataset.load_mask(ids["ISIC_0000001"])
    # Globules: two blobs (the 3-pixel speck is under MIN_COMPONENT_PIXELS); pigment network: one region.
    assert masks.shape == SIZE + (3,) and list(class_ids) == [1, 1, 4]
    assert [int(masks[..., i].sum()) for i in range(3)] == [36, 60, 800]
    info = dataset.image_info[ids["ISIC_0000001"]]
    assert info["criteria"] == {"task2_globules": True, "task2_milia_like_cyst": False,
                                "task2_negative_network": False, "task2_pigment_network": True,
                                "task2_streaks": False}
    assert info["mask_path"].endswith("ISIC_0000001_segmentation.png") and info["label"] is None

    masks, class_ids = dataset.load_mask(ids["ISIC_0000002"])
    assert masks.shape == SIZE + (0,) and class_ids.shape == (0,) and class_ids.dtype == np.int32
    assert dataset.image_info[ids["ISIC_0000002"]]["mask_path"] is None

    masks, class_ids = dataset.load_mask(ids["ISIC_0000003"])
    assert list(class_ids) == [2] and int(masks.sum()) == 100
    assert dataset.image_info[ids["ISIC_0000003"]]["criteria"] == {
        "task2_globules": False, "task2_milia_like_cyst": True, "task2_pigment_network": False}


def test_task2_zero_instance_image_goes_through_load_image_gt(task2_root):
    from mrcnn.data import load_image_gt
    dataset = LesionDataset()
    dataset.load(str(task2_root), "train", classes="isic2018_attributes")
    config = LesionConfig(classes="isic2018_attributes", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64)
    assert config.NUM_CLASSES == 6
    _, _, class_ids, boxes, masks = load_image_gt(dataset, config, by_stem(dataset)["ISIC_0000002"])
    assert class_ids.shape == (0,) and boxes.shape == (0, 4) and masks.shape[-1] == 0


def test_task2_validation_folder_without_version_suffix(task2_root):
    dataset = LesionDataset()
    summary = dataset.load(str(task2_root), "val", classes="isic2018_attributes")
    assert summary["images"] == 1 and dataset.image_info[0]["stem"] == "ISIC_0000004"
    assert list(dataset.load_mask(0)[1]) == [4]


def test_task1_keeps_the_tree_for_lesion_schemes(task2_root, caplog):
    assert detect_layouts(str(task2_root)) == [("isic2018", str(task2_root))]
    with caplog.at_level(logging.WARNING):
        assert resolve_layout(str(task2_root))[0] == "isic2018"
    assert not [r for r in caplog.records if "several datasets" in r.getMessage()]
    dataset = LesionDataset()
    summary = dataset.load(str(task2_root), "train", classes="lesion")
    assert summary["layout"] == "isic2018" and summary["images"] == 1
    # By name, Task 2 reads the Task 1 masks of the images that have them for classes="lesion".
    dataset = LesionDataset()
    summary = dataset.load(str(task2_root), "train", classes="lesion", layout="isic2018_task2")
    assert summary["layout"] == "isic2018_task2" and summary["images"] == 1
    assert dataset.load_mask(0)[0].shape == SIZE + (1,)
    assert sum("no lesion mask" in s["reason"] for s in summary["skipped"]) == 2


def test_attributes_without_attribute_masks_fail_clearly(tmp_path, lesion_folder_root, task2_root):
    with pytest.raises(DatasetError, match=r"no dermoscopy dataset found.*isic2018_task2"):
        LesionDataset().load(str(lesion_folder_root), "all", classes="isic2018_attributes")
    with pytest.raises(DatasetError, match=r"needs attribute masks, but the folder dataset"):
        LesionDataset().load(str(lesion_folder_root), "all", classes="isic2018_attributes", layout="folder")
    with pytest.raises(SchemeError, match="synthetic set has none"):
        LesionDataset().load(None, "train", classes="isic2018_attributes")
    with pytest.raises(SchemeError, match="attribute masks"):
        load_labelled(str(task2_root), "train", classes="isic2018_attributes")
