"""Every dermoscopy layout is detected and read; bad files are skipped with a reason."""
import csv
import logging
import os
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from skinlesion import DatasetError, LesionDataset, SchemeError
from skinlesion.layouts import detect_layouts, read_mask_bool


def write_csv(path, rows, header=None):
    """Write rows (lists) to a CSV file, with an optional header row."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def load(path, subset="all", classes="lesion", **kwargs):
    """Load one subset into a fresh LesionDataset; return (dataset, summary)."""
    dataset = LesionDataset()
    summary = dataset.load(str(path), subset, classes=classes, **kwargs)
    return dataset, summary


def stems(dataset):
    """Set of image stems registered in a dataset."""
    return {info["stem"] for info in dataset.image_info}


# --------------------------------------------------------------------------- ISIC 2016

@pytest.fixture
def isic2016_root(tmp_path, lesion_write_pair):
    """ISIC 2016: 10 Training + 4 Test images; Part 3 labels (words for Training, 0/1 for Test)."""
    root = tmp_path / "ISIC2016"
    train_rows, test_rows = [], []
    for i in range(14):
        split = "Training" if i < 10 else "Test"
        stem = f"ISIC_{i:07d}"
        lesion_write_pair(str(root / f"ISBI2016_ISIC_Part1_{split}_Data" / f"{stem}.jpg"),
                          str(root / f"ISBI2016_ISIC_Part1_{split}_GroundTruth" / f"{stem}_Segmentation.png"),
                          seed=i)
        if split == "Training":
            train_rows.append([stem, "malignant" if i % 3 == 0 else "benign"])
        else:
            test_rows.append([stem, "1.0" if i % 2 else "0.0"])
    write_csv(str(root / "ISBI2016_ISIC_Part3_Training_GroundTruth.csv"), train_rows)
    write_csv(str(root / "ISBI2016_ISIC_Part3_Test_GroundTruth.csv"), test_rows)
    return root


def test_isic2016_official_test_and_carved_val(isic2016_root):
    train, summary = load(isic2016_root, "train", classes="binary")
    val, _ = load(isic2016_root, "val", classes="binary")
    test, test_summary = load(isic2016_root, "test", classes="binary")
    assert summary["layout"] == "isic2016"
    assert test_summary["images"] == 4 and test_summary["classes"] == {"benign": 2, "malignant": 2}
    assert len(val.image_info) >= 1
    assert stems(train) | stems(val) == {f"ISIC_{i:07d}" for i in range(10)}
    assert not stems(train) & stems(val)
    assert stems(load(isic2016_root, "val", classes="binary")[0]) == stems(val)  # seeded
    assert train.image_info[0]["mask_path"].endswith("_Segmentation.png")
    with pytest.raises(SchemeError, match="benign, malignant"):
        load(isic2016_root, "train", classes="isic2017")


# --------------------------------------------------------------------------- ISIC 2017

@pytest.fixture
def isic2017_root(tmp_path, lesion_write_pair):
    """ISIC 2017: 6 Training, 3 Validation, 3 Test_v2 images, with superpixels and metadata files."""
    root = tmp_path / "isic2017"
    index = 0
    for split, count in (("Training", 6), ("Validation", 3), ("Test_v2", 3)):
        rows = []
        data = root / f"ISIC-2017_{split}_Data"
        for _ in range(count):
            stem = f"ISIC_{index:07d}"
            lesion_write_pair(str(data / f"{stem}.jpg"),
                              str(root / f"ISIC-2017_{split}_Part1_GroundTruth" / f"{stem}_segmentation.png"),
                              seed=100 + index)
            Image.new("RGB", (80, 64), (1, 2, 3)).save(data / f"{stem}_superpixels.png")
            rows.append([stem, "1.0" if index % 3 == 0 else "0.0", "1.0" if index % 3 == 1 else "0.0"])
            index += 1
        write_csv(str(data / f"ISIC-2017_{split}_Data_metadata.csv"), [[r[0], 50, "male"] for r in rows],
                  ["image_id", "age_approximate", "sex"])
        write_csv(str(root / f"ISIC-2017_{split}_Part3_GroundTruth.csv"), rows,
                  ["image_id", "melanoma", "seborrheic_keratosis"])
    return root


def test_isic2017_official_splits_and_labels(isic2017_root):
    train, summary = load(isic2017_root, "train", classes="isic2017")
    assert summary["layout"] == "isic2017" and summary["images"] == 6 and not summary["skipped"]
    assert summary["classes"] == {"melanoma": 2, "seborrheic_keratosis": 2, "nevus": 2}
    assert load(isic2017_root, "val", classes="isic2017")[1]["images"] == 3
    assert load(isic2017_root, "test", classes="isic2017")[1]["images"] == 3
    everything, all_summary = load(isic2017_root, "all", classes="binary")
    assert all_summary["images"] == 12
    assert all_summary["classes"] == {"benign": 8, "malignant": 4}
    info = train.image_info[0]
    assert info["label"] == "melanoma" and info["stem"] == "ISIC_0000000" and info["layout"] == "isic2017"
    mask, class_ids = train.load_mask(0)
    assert mask.shape == (64, 80, 1) and mask.dtype == bool and class_ids.tolist() == [1]
    assert train.load_image(0).shape == (64, 80, 3)


# --------------------------------------------------------------------------- ISIC 2018

@pytest.fixture
def isic2018_root(tmp_path, lesion_write_pair):
    """ISIC 2018 Task 1: 6 Training + 2 Validation; Task 3 labels for 4 of them plus unrelated rows."""
    root = tmp_path / "isic2018"
    codes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    rows = []
    for i in range(8):
        split = "Training" if i < 6 else "Validation"
        stem = f"ISIC_{i:07d}"
        lesion_write_pair(str(root / f"ISIC2018_Task1-2_{split}_Input" / f"{stem}.jpg"),
                          str(root / f"ISIC2018_Task1_{split}_GroundTruth" / f"{stem}_segmentation.png"),
                          seed=200 + i)
        if i < 4:
            rows.append([stem] + ["1.0" if c == codes[i] else "0.0" for c in codes])
    (root / "ISIC2018_Task1-2_Training_Input" / "LICENSE.txt").write_text("licence")
    # Task 3 images are mostly other images (HAM10000): rows whose image is absent are not errors.
    rows += [[f"ISIC_{9000000 + i:07d}"] + ["0.0"] * 6 + ["1.0"] for i in range(20)]
    name = "ISIC2018_Task3_Training_GroundTruth"
    write_csv(str(root / name / f"{name}.csv"), rows, ["image"] + codes)
    return root


def test_isic2018_task1_with_task3_labels(isic2018_root):
    _, summary = load(isic2018_root, "train")
    assert summary["layout"] == "isic2018" and summary["images"] == 6 and not summary["skipped"]
    labelled, summary = load(isic2018_root, "train", classes="isic2018")
    assert summary["images"] == 4
    assert summary["classes"] == {"MEL": 1, "NV": 1, "BCC": 1, "AKIEC": 1, "BKL": 0, "DF": 0, "VASC": 0}
    assert sorted(s["file"].rsplit("/", 1)[-1] for s in summary["skipped"]) == ["ISIC_0000004.jpg",
                                                                                 "ISIC_0000005.jpg"]
    assert all("no row" in s["reason"] for s in summary["skipped"])
    assert load(isic2018_root, "val")[1]["images"] == 2
    with pytest.raises(DatasetError, match="Test"):
        load(isic2018_root, "test")


# --------------------------------------------------------------------------- HAM10000

@pytest.fixture
def ham_root(tmp_path, lesion_write_pair):
    """HAM10000: 8 images over part_1/part_2; HAM_0000001 has two images; one mel."""
    root = tmp_path / "HAM10000"
    rows = []
    for i in range(8):
        part = 1 if i < 5 else 2
        stem = f"ISIC_{24300 + i:07d}"
        lesion_write_pair(str(root / f"HAM10000_images_part_{part}" / f"{stem}.jpg"),
                          str(root / "HAM10000_segmentations_lesion_tschandl" / f"{stem}_segmentation.png"),
                          seed=300 + i, size=(48, 64))
        lesion = "HAM_0000001" if i in (0, 6) else f"HAM_{100 + i:07d}"
        rows.append([lesion, stem, "mel" if i == 3 else "bkl" if i == 4 else "nv", "histo", 50, "male", "back"])
    write_csv(str(root / "HAM10000_metadata.csv"), rows,
              ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"])
    return root


def test_ham10000_labels_and_lesion_ids(ham_root):
    dataset, summary = load(ham_root, "all", classes="isic2018")
    assert summary["layout"] == "ham10000" and summary["images"] == 8
    assert summary["classes"]["MEL"] == 1 and summary["classes"]["BKL"] == 1 and summary["classes"]["NV"] == 6
    by_stem = {info["stem"]: info for info in dataset.image_info}
    assert by_stem["ISIC_0024300"]["lesion_id"] == by_stem["ISIC_0024306"]["lesion_id"] == "HAM_0000001"
    assert load(ham_root, "all", classes="binary")[1]["classes"] == {"benign": 7, "malignant": 1}
    with pytest.raises(SchemeError, match="isic2018"):
        load(ham_root, "all", classes="ph2")


def test_ham10000_two_images_of_one_lesion_share_a_subset(ham_root):
    for seed in range(6):
        where = {}
        for subset in ("train", "val", "test"):
            try:
                dataset, _ = load(ham_root, subset, seed=seed)
            except DatasetError:
                continue  # a tiny dataset can leave a subset empty
            for info in dataset.image_info:
                where[info["stem"]] = subset
        assert len(where) == 8
        assert where["ISIC_0024300"] == where["ISIC_0024306"], seed


# --------------------------------------------------------------------------- PH2

# PH2_dataset.xlsx's criteria header cells, columns F-Q, as in the original sheet.
PH2_CRITERIA_HEADER = ("Asymmetry\n(0/1/2)", "Pigment Network\n(AT/T)", "Dots/Globules\n(A/AT/T)", "Streaks\n(A/P)",
                       "Regression Areas\n(A/P)", "Blue-Whitish Veil\n(A/P)", "White", "Red", "Light-Brown",
                       "Dark-Brown", "Blue-Gray", "Black")


def write_ph2_sheet(path, rows, criteria=None):
    """A PH2_dataset.xlsx like the original: legend rows above, header at row 13.

    rows: [(image name, "common" / "atypical" / "melanoma")]. Without
    ``criteria`` the header stops at Asymmetry (column F, 0 for every row);
    with criteria {image name: 12 cells for columns F-Q} it has all of F-Q
    (the colour columns under a "Colors" cell at L12), rows not in it empty.
    """
    import openpyxl
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.cell(row=2, column=6, value="Legends")
    sheet.cell(row=3, column=6, value="Asymmetry")
    sheet.cell(row=3, column=7, value=0)
    sheet.cell(row=3, column=8, value="Fully Simmetric")
    sheet.cell(row=6, column=6, value="Pigment Network\nDots/Globules\nStreaks\nRegression Areas\nBlue-Whitish Veil")
    sheet.cell(row=6, column=7, value="AT")
    sheet.cell(row=6, column=8, value="Atypical")
    sheet.cell(row=12, column=3, value="Clinical Diagnosis")
    header = ["Image Name", "Histological Diagnosis", "Common Nevus", "Atypical Nevus", "Melanoma"]
    header += list(PH2_CRITERIA_HEADER if criteria is not None else PH2_CRITERIA_HEADER[:1])
    if criteria is not None:
        sheet.cell(row=12, column=12, value="Colors")
    for column, name in enumerate(header, start=1):
        sheet.cell(row=13, column=column, value=name)
    for offset, (name, diagnosis) in enumerate(rows):
        sheet.cell(row=14 + offset, column=1, value=name)
        column = {"common": 3, "atypical": 4, "melanoma": 5}[diagnosis]
        sheet.cell(row=14 + offset, column=column, value="X")
        cells = (0,) if criteria is None else criteria.get(name, ())
        for position, value in enumerate(cells, start=6):
            sheet.cell(row=14 + offset, column=position, value=value)
    workbook.save(path)


@pytest.fixture
def ph2_parent(tmp_path, lesion_write_pair):
    """A folder holding PH2Dataset/ with .bmp, .png and .jpg images and 1-bit .bmp / .png masks."""
    root = tmp_path / "data" / "PH2Dataset"
    cases = [("IMD002", "bmp", "common"), ("IMD003", "png", "atypical"), ("IMD004", "jpg", "melanoma"),
             ("IMD006", "bmp", "common"), ("IMD008", "jpg", "atypical")]
    for i, (name, ext, _) in enumerate(cases):
        case = root / "PH2 Dataset images" / name
        mask_ext = "bmp" if i % 2 == 0 else "png"
        lesion_write_pair(str(case / f"{name}_Dermoscopic_Image" / f"{name}.{ext}"),
                          str(case / f"{name}_lesion" / f"{name}_lesion.{mask_ext}"),
                          seed=400 + i, mask_mode="1")
        (case / f"{name}_roi").mkdir()
    write_ph2_sheet(str(root / "PH2_dataset.xlsx"), [(n, d) for n, _, d in cases])
    return root.parent


def test_ph2_from_parent_folder_with_bmp_png_jpg(ph2_parent):
    dataset, summary = load(ph2_parent, "all", classes="ph2")
    assert summary["layout"] == "ph2" and summary["images"] == 5 and not summary["skipped"]
    assert summary["classes"] == {"common_nevus": 2, "atypical_nevus": 2, "melanoma": 1}
    assert summary["root"].endswith("PH2Dataset")
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        mask, class_ids = dataset.load_mask(image_id)
        assert image.shape == (64, 80, 3) and mask.shape == (64, 80, 1) and mask.any()
        assert class_ids[0] == dataset.image_info[image_id]["class_id"]
    assert load(ph2_parent / "PH2Dataset", "all", classes="isic2017")[1]["classes"] == {
        "melanoma": 1, "seborrheic_keratosis": 0, "nevus": 4}


def test_ph2_mask_pixels_match_the_generator(ph2_parent):
    from skinlesion.synthetic import generate
    dataset, _ = load(ph2_parent, "all")
    by_stem = {info["stem"]: i for i, info in enumerate(dataset.image_info)}
    _, mask, _ = generate(400, (64, 80))
    assert np.array_equal(dataset.load_mask(by_stem["IMD002"])[0][..., 0], mask)


# --------------------------------------------------------------------------- folder

def test_folder_layout(lesion_folder_root):
    dataset, summary = load(lesion_folder_root, "all", classes="isic2017")
    assert summary["layout"] == "folder" and summary["images"] == 12 and not summary["skipped"]
    assert summary["classes"] == {"melanoma": 4, "seborrheic_keratosis": 4, "nevus": 4}
    image = dataset.load_image(0)
    mask, class_ids = dataset.load_mask(0)
    assert image.shape == (64, 64, 3) and mask.shape == (64, 64, 1)
    assert class_ids.dtype == np.int32
    assert dataset.load_label(0) == dataset.class_names[class_ids[0]]
    assert dataset.image_reference(0).endswith("synth_00000.png")


def test_folder_masks_named_like_the_stem(tmp_path, lesion_write_pair):
    for i in range(3):
        lesion_write_pair(str(tmp_path / "images" / f"case{i}.png"), str(tmp_path / "masks" / f"case{i}.png"),
                          seed=i)
    assert load(tmp_path)[1]["images"] == 3


def test_detection_order_and_layout_choice(tmp_path, ph2_parent, lesion_folder_root):
    found = detect_layouts(str(tmp_path))
    assert [name for name, _ in found] == ["folder"]  # lesion_folder sits directly in tmp_path
    assert load(tmp_path, layout="folder")[1]["layout"] == "folder"


# --------------------------------------------------------------------------- real data

def test_real_ph2(lesion_real_ph2):
    dataset, summary = load(lesion_real_ph2, "all", classes="ph2")
    assert summary["images"] == 200 and not summary["skipped"]
    assert summary["classes"] == {"common_nevus": 80, "atypical_nevus": 80, "melanoma": 40}
    # IMD002's mask is the one 24-bit RGB file; it must binarise like the 1-bit ones.
    index = next(i for i, info in enumerate(dataset.image_info) if info["stem"] == "IMD002")
    mask, _ = dataset.load_mask(index)
    assert mask.shape[:2] == dataset.load_image(index).shape[:2] and 0.05 < mask.mean() < 0.9
    parts = [stems(load(os.path.dirname(lesion_real_ph2), s, classes="ph2", layout="ph2")[0])
             for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == 200 and len(set.union(*parts)) == 200
    assert len(parts[2]) == 20


def test_real_ham10000_sample(lesion_real_ham):
    dataset, summary = load(lesion_real_ham, "all", classes="isic2018")
    assert summary["layout"] == "ham10000" and summary["images"] == 5
    assert summary["classes"]["NV"] == 3 and summary["classes"]["BKL"] == 2
    mask, _ = dataset.load_mask(0)
    assert mask.shape == (450, 600, 1) and mask.any()


# --------------------------------------------------------------------------- bad input

@pytest.fixture
def bad_folder(tmp_path, lesion_write_pair):
    """A folder layout with one good image and one of each kind of bad input."""
    root = tmp_path / "bad"
    for stem in ("good", "nolabel", "truncated_data"):
        lesion_write_pair(str(root / "images" / f"{stem}.png"), str(root / "masks" / f"{stem}.png"), seed=1)
    lesion_write_pair(str(root / "images" / "nomask.png"), None, seed=2)
    lesion_write_pair(str(root / "images" / "mismatch.png"), str(root / "masks" / "mismatch.png"),
                      seed=3, mask_size=(32, 40))
    # Cut inside the header: unreadable at load time.
    (root / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    (root / "masks" / "broken.png").write_bytes((root / "masks" / "good.png").read_bytes())
    # Header intact, pixel data cut: only decoding finds it.
    data = (root / "images" / "truncated_data.png").read_bytes()
    (root / "images" / "truncated_data.png").write_bytes(data[: len(data) // 2])
    write_csv(str(root / "labels.csv"), [["good.png", "melanoma"], ["truncated_data.png", "nevus"],
                                         ["nomask.png", "nevus"], ["mismatch.png", "nevus"],
                                         ["broken.jpg", "nevus"], ["ghost.png", "melanoma"]],
              ["image", "label"])
    return root


def test_bad_files_are_skipped_with_one_line_each(bad_folder, caplog):
    with caplog.at_level(logging.WARNING):
        dataset, summary = load(bad_folder, "all", classes="isic2017")
    reasons = {os.path.basename(s["file"]): s["reason"] for s in summary["skipped"]}
    assert "no mask" in reasons["nomask.png"]
    assert "differs from image size" in reasons["mismatch.png"]
    assert "unreadable" in reasons["broken.jpg"]
    assert "ghost" in reasons["labels.csv"]  # a CSV row without its image
    assert "no row in labels.csv" in reasons["nolabel.png"]  # scheme needs a label
    assert stems(dataset) == {"good", "truncated_data"}
    assert summary["images"] == 2 and len(summary["skipped"]) == 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 5 and all("Skipping" in r.getMessage() for r in warnings)
    assert dataset.summary is summary


def test_truncated_pixels_raise_value_error_naming_the_file(bad_folder):
    dataset, _ = load(bad_folder, "all", classes="isic2017")
    index = next(i for i, info in enumerate(dataset.image_info) if info["stem"] == "truncated_data")
    with pytest.raises(ValueError, match="truncated_data.png"):
        dataset.load_image(index)


def test_unlabelled_images_are_fine_for_the_lesion_scheme(bad_folder):
    _, summary = load(bad_folder, "all", classes="lesion")
    assert summary["images"] == 3 and summary["classes"] == {"lesion": 3}


@pytest.mark.parametrize("mode", ["I;16", "RGBA", "P", "L", "LA"])
def test_unusual_image_modes_load_as_rgb_uint8(tmp_path, lesion_write_pair, mode):
    image, _ = lesion_write_pair(str(tmp_path / "images" / "a.png"), str(tmp_path / "masks" / "a.png"))
    pil = Image.fromarray(image)
    if mode == "I;16":
        pil = Image.fromarray((np.asarray(pil.convert("L")).astype(np.uint16) * 257))
    else:
        pil = pil.convert(mode)
    pil.save(tmp_path / "images" / "a.png")
    dataset, _ = load(tmp_path)
    loaded = dataset.load_image(0)
    assert loaded.shape == (64, 80, 3) and loaded.dtype == np.uint8 and loaded.max() > 100


def test_mask_binarisation_rules(tmp_path):
    grey = np.zeros((4, 6), np.uint8)
    grey[1, 1:4] = [128, 129, 255]
    Image.fromarray(grey).save(tmp_path / "l.png")
    assert read_mask_bool(str(tmp_path / "l.png"))[1].tolist() == [False, False, True, True, False, False]
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "i16.png")
    assert read_mask_bool(str(tmp_path / "i16.png"))[1].tolist() == [False, False, True, True, False, False]
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.bmp")
    assert read_mask_bool(str(tmp_path / "rgb.bmp")).sum() == 2
    Image.fromarray(grey).convert("P").save(tmp_path / "p.png")
    assert read_mask_bool(str(tmp_path / "p.png")).sum() == 2
    Image.fromarray(grey > 0).save(tmp_path / "one.bmp")  # 1-bit: any nonzero is lesion
    assert read_mask_bool(str(tmp_path / "one.bmp")).sum() == 3
    with pytest.raises(ValueError, match="nothing.png"):
        (tmp_path / "nothing.png").write_bytes(b"not an image")
        read_mask_bool(str(tmp_path / "nothing.png"))


def test_disconnected_pieces_stay_one_instance(tmp_path, lesion_write_pair):
    lesion_write_pair(str(tmp_path / "images" / "two.png"), None)
    mask = np.zeros((64, 80), np.uint8)
    mask[5:15, 5:15] = 255
    mask[40:60, 50:70] = 255
    os.makedirs(tmp_path / "masks")
    Image.fromarray(mask).save(tmp_path / "masks" / "two_segmentation.png")
    dataset, _ = load(tmp_path)
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (64, 80, 1) and class_ids.tolist() == [1]
    assert masks.sum() == 100 + 400


def test_empty_folder_names_path_and_layouts(tmp_path):
    with pytest.raises(DatasetError, match="ISIC2018_Task1-2.*PH2 Dataset images.*HAM10000") as info:
        load(tmp_path)
    assert str(tmp_path) in str(info.value)
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="no usable image"):
        load(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load(tmp_path / "nowhere")


def test_wrong_scheme_is_a_value_error_naming_what_exists(lesion_folder_root):
    with pytest.raises(SchemeError) as info:
        load(lesion_folder_root, "all", classes="ph2")
    assert isinstance(info.value, ValueError)
    assert "nevus" in str(info.value) and "isic2017" in str(info.value)
    with pytest.raises(SchemeError, match="lesion, isic2017"):
        load(lesion_folder_root, "all", classes="nonsense")


def test_scheme_without_any_labels_is_an_error(tmp_path, lesion_write_pair):
    lesion_write_pair(str(tmp_path / "images" / "a.png"), str(tmp_path / "masks" / "a.png"))
    with pytest.raises(SchemeError, match="no labels"):
        load(tmp_path, "all", classes="binary")


def test_summary_counts_by_class(lesion_folder_root):
    counts = Counter()
    for subset in ("train", "val", "test"):
        _, summary = load(lesion_folder_root, subset, classes="isic2017")
        counts.update(summary["classes"])
        assert summary["subset"] == subset
    assert counts == {"melanoma": 4, "seborrheic_keratosis": 4, "nevus": 4}


def test_exif_rotated_jpeg_is_checked_after_rotation(tmp_path, lesion_write_pair):
    image, _ = lesion_write_pair(str(tmp_path / "images" / "r.png"), None)  # stored 80 wide x 64 high
    os.remove(tmp_path / "images" / "r.png")
    pil = Image.fromarray(image)
    exif = pil.getexif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees: 64 wide x 80 high
    pil.save(tmp_path / "images" / "r.jpg", exif=exif)
    os.makedirs(tmp_path / "masks")
    Image.fromarray(np.full((80, 64), 255, np.uint8)).save(tmp_path / "masks" / "r.png")
    dataset, summary = load(tmp_path)
    assert summary["images"] == 1 and not summary["skipped"]
    assert dataset.load_image(0).shape == (80, 64, 3) and dataset.load_mask(0)[0].shape == (80, 64, 1)


# --------------------------------------------------------------------------- registry

def test_registered_layouts_are_the_documented_ones():
    from skinlesion import layouts
    names = [layout.name for layout in layouts.registered()]
    # The README's dataset table and skinlesion/layouts/__init__.py name these seven.
    assert set(names) == {"isic2016", "isic2017", "isic2018", "isic2018_task2", "ham10000", "ph2", "folder"}
    assert tuple(names) == layouts.LAYOUT_ORDER == ("isic2018", "isic2017", "isic2016", "isic2018_task2", "ph2",
                                                    "ham10000", "folder")
    assert list(layouts.EXPECTED) == names and all(layouts.EXPECTED.values())


@pytest.fixture
def pairs_layout():
    """A throw-away layout "pairs": pairs/<stem>.jpg beside pairs/<stem>_mask.png, registered for one test."""
    from skinlesion.layouts import (Layout, Scan, check_pair, index_files, list_images, register,
                                    unique_stems, unregister)

    def detect(directory, names):
        """True when ``directory`` has a pairs/ entry."""
        return "pairs" in names

    def scan(root, subsets=None):
        """One record per pairs/<stem>.jpg with its <stem>_mask.png."""
        found = Scan("pairs", root)
        folder = os.path.join(root, "pairs")
        files = index_files(folder)
        images = [p for p in list_images(folder) if not p.endswith("_mask.png")]
        for stem, image_path in unique_stems(found, images):
            mask_path = files.get(f"{stem}_mask.png")
            size = check_pair(found, image_path, mask_path, f"pairs/{stem}_mask.png")
            if size is not None:
                found.add(stem, image_path, mask_path, size)
        return found

    layout = register(Layout(name="pairs", expected="pairs/<stem>.jpg + pairs/<stem>_mask.png",
                             detect=detect, scan=scan))
    yield layout
    unregister("pairs")


def test_a_registered_layout_is_detected_and_scanned(tmp_path, lesion_write_pair, pairs_layout):
    from skinlesion import layouts
    root = tmp_path / "mine"
    for i in range(4):
        lesion_write_pair(str(root / "pairs" / f"p{i}.jpg"), str(root / "pairs" / f"p{i}_mask.png"), seed=i)
    lesion_write_pair(str(root / "pairs" / "lonely.jpg"), None)
    assert detect_layouts(str(tmp_path)) == [("pairs", str(root))]
    assert layouts.resolve_layout(str(tmp_path), "pairs") == ("pairs", str(root))
    assert "pairs" in layouts.EXPECTED and layouts.LAYOUT_ORDER[-1] == "pairs"
    scan = layouts.scan_layout("pairs", str(root))
    assert [r.stem for r in scan.records] == ["p0", "p1", "p2", "p3"]
    assert [os.path.basename(s["file"]) for s in scan.skipped] == ["lonely.jpg"]
    dataset, summary = load(tmp_path, "all")
    assert summary["layout"] == "pairs" and summary["images"] == 4 and len(summary["skipped"]) == 1
    assert dataset.load_mask(0)[0].shape == (64, 80, 1)


def test_an_unregistered_layout_is_gone(tmp_path, lesion_write_pair):
    from skinlesion import layouts
    lesion_write_pair(str(tmp_path / "pairs" / "p0.jpg"), str(tmp_path / "pairs" / "p0_mask.png"))
    assert "pairs" not in layouts.EXPECTED and detect_layouts(str(tmp_path)) == []
    with pytest.raises(DatasetError, match="unknown layout; choose one of isic2018"):
        layouts.scan_layout("pairs", str(tmp_path))
    with pytest.raises(ValueError, match="registered already"):
        layouts.register(layouts.registered()[0])
