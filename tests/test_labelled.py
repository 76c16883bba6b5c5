"""Label-only layouts load for classification from their official names; splits keep groups together."""
import csv
import io
import os

import numpy as np
import pytest
from PIL import Image

from skinlesion import DatasetError, LesionDataset, SchemeError
from skinlesion.labelled import load_labelled, read_image, read_image_or_skip
from skinlesion.layouts import detect_layouts, resolve_layout

SIZE = (12, 16)  # (H, W) of every fixture image


def write_image(path, seed=0, size=SIZE, fmt=None):
    """Write a small random RGB image (format from the extension or ``fmt``); return the pixels [H, W, 3]."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return pixels


def write_csv(path, header, rows):
    """Write a CSV file with a header row."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def stems(items):
    """Set of the items' image ids."""
    return {item.image_id for item in items}


def subset_of_groups(path, **kwargs):
    """{group: set of subsets its images went to} over the whole dataset."""
    items, _ = load_labelled(path, "all", **kwargs)
    found = {}
    for item in items:
        found.setdefault(item.group, set()).add(item.subset)
    return found


# --------------------------------------------------------------------------- ISIC 2017

def isic2017_tree(root, masks=False):
    """ISIC 2017 Training (8) / Validation (3) / Test_v2 (3) images with Part 3 CSVs (+ Part 1 masks)."""
    index = 0
    for split, count in (("Training", 8), ("Validation", 3), ("Test_v2", 3)):
        rows = []
        for _ in range(count):
            stem = f"ISIC_{index:07d}"
            write_image(str(root / f"ISIC-2017_{split}_Data" / f"{stem}.jpg"), index)
            if masks:
                mask = Image.fromarray(np.full(SIZE, 255, np.uint8))
                os.makedirs(root / f"ISIC-2017_{split}_Part1_GroundTruth", exist_ok=True)
                mask.save(root / f"ISIC-2017_{split}_Part1_GroundTruth" / f"{stem}_segmentation.png")
            rows.append([stem, float(index % 3 == 0), float(index % 3 == 1)])
            index += 1
        write_image(str(root / f"ISIC-2017_{split}_Data" / "ISIC_0000000_superpixels.png"), 99)
        write_csv(str(root / f"ISIC-2017_{split}_Part3_GroundTruth.csv"),
                  ["image_id", "melanoma", "seborrheic_keratosis"], rows)
    return root


def test_isic2017_part3_official_splits_and_no_masks(tmp_path):
    root = isic2017_tree(tmp_path / "ISIC2017")
    train, summary = load_labelled(root, "train", classes="isic2017")
    assert summary["layout"] == "isic2017_part3" and summary["official_split"] and summary["images"] == 8
    assert summary["classes"] == {"melanoma": 3, "seborrheic_keratosis": 3, "nevus": 2}
    assert summary["subsets"] == {"train": 8, "val": 3, "test": 3} and not summary["skipped"]
    assert all(item.mask_path is None and item.key is None for item in train)
    assert [item.class_index for item in train[:3]] == [0, 1, 2]
    assert read_image(train[0]).shape == SIZE + (3,)
    test, _ = load_labelled(root, "test", classes="melanoma")
    assert stems(test) == {"ISIC_0000011", "ISIC_0000012", "ISIC_0000013"}
    assert [item.label for item in test] == ["not_melanoma", "melanoma", "not_melanoma"]
    # Segmentation still sees the isic2017 layout there, and still finds no masks.
    assert detect_layouts(str(root)) == [("isic2017", str(root))]
    with pytest.raises(DatasetError, match="no usable image"):
        LesionDataset().load(str(root), "train")


def test_isic2017_with_masks_stays_the_segmentation_layout(tmp_path):
    root = isic2017_tree(tmp_path / "ISIC2017", masks=True)
    assert detect_layouts(str(root), "classification") == [("isic2017", str(root))]
    items, summary = load_labelled(root, "val", classes="isic2017")
    assert summary["layout"] == "isic2017" and summary["official_split"] and len(items) == 3
    assert all(item.mask_path and item.mask_path.endswith("_segmentation.png") for item in items)


def test_isic2017_training_folder_alone_is_split_seeded(tmp_path):
    root = tmp_path / "ISIC2017"
    isic2017_tree(root)
    for split in ("Validation", "Test_v2"):
        os.remove(root / f"ISIC-2017_{split}_Part3_GroundTruth.csv")
        for name in os.listdir(root / f"ISIC-2017_{split}_Data"):
            os.remove(root / f"ISIC-2017_{split}_Data" / name)
        os.rmdir(root / f"ISIC-2017_{split}_Data")
    parts = [load_labelled(root, s, classes="isic2017", split=(0.5, 0.25, 0.25))[0] for s in ("train", "val", "test")]
    assert not load_labelled(root, "all", classes="isic2017")[1]["official_split"]
    assert sum(len(p) for p in parts) == 8 and len(set.union(*map(stems, parts))) == 8


def test_isic2017_melanoma_column_copy(tmp_path):
    root = tmp_path / "ISIC2017_Training_256"
    rows = []
    for i in range(10):
        write_image(str(root / "ISIC-2017_Training_Data" / f"ISIC_{i:07d}.jpg"), i)
        rows.append([f"ISIC_{i:07d}", "1.0" if i < 3 else "0.0"])
    rows.append(["ISIC_0000099", "0.0"])  # no such image
    write_csv(str(root / "ISIC-2017_Training_Classes.csv"), ["image_id", "melanoma"], rows)
    items, summary = load_labelled(root, "all", classes="melanoma")
    assert summary["layout"] == "isic2017_classes" and not summary["official_split"]
    assert summary["classes"] == {"not_melanoma": 7, "melanoma": 3} and summary["grouped_by"] == "image"
    assert [s["file"] for s in summary["skipped"]] == [str(root / "ISIC-2017_Training_Classes.csv")]
    with pytest.raises(SchemeError, match="can supply classes= 'melanoma'"):
        load_labelled(root, classes="isic2017")


@pytest.mark.parametrize("classes", ["melanoma", "isic2017"])
def test_real_isic2017_training_256(classes):
    root = "/work/shared/data/ISIC2017_Training_256"
    if not os.path.isdir(os.path.join(root, "ISIC-2017_Training_Data")):
        pytest.skip("shared ISIC2017_Training_256 not present")
    if classes == "isic2017":
        with pytest.raises(SchemeError, match="not_melanoma"):
            load_labelled(root, classes=classes)
        return
    items, summary = load_labelled(root, "all", classes=classes)
    assert summary["layout"] == "isic2017_classes" and summary["images"] == 2000 and not summary["skipped"]
    assert summary["classes"] == {"not_melanoma": 1626, "melanoma": 374}
    assert sum(summary["subsets"].values()) == 2000 and summary["subsets"]["val"] > 150
    assert read_image(items[0]).shape == (256, 256, 3)


# --------------------------------------------------------------------------- ISIC 2018 Task 3

def test_isic2018_task3_groupings_and_official_folders(tmp_path):
    root = tmp_path / "ISIC2018"
    codes = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
    index, groupings = 0, []
    for split, count in (("Training", 7), ("Validation", 2)):
        rows = []
        for _ in range(count):
            stem = f"ISIC_{index:07d}"
            write_image(str(root / f"ISIC2018_Task3_{split}_Input" / f"{stem}.jpg"), index)
            rows.append([stem] + [float(j == index % 7) for j in range(7)])
            groupings.append([stem, f"HAM_{index // 2:07d}", "histo"])
            index += 1
        name = f"ISIC2018_Task3_{split}_GroundTruth"
        write_csv(str(root / name / f"{name}.csv"), ["image"] + list(codes), rows)
    write_csv(str(root / "ISIC2018_Task3_Training_LesionGroupings.csv"),
              ["image", "lesion_id", "diagnosis_confirm_type"], groupings[:7])
    # A Task 1 tree in the same folder is the segmentation dataset, Task 3 the classification one.
    write_image(str(root / "ISIC2018_Task1-2_Training_Input" / "ISIC_0099999.jpg"), 5)
    assert resolve_layout(str(root))[0] == "isic2018"
    train, summary = load_labelled(root, "train", classes="isic2018")
    assert summary["layout"] == "isic2018_task3" and summary["official_split"] and len(train) == 7
    assert [item.label for item in train] == list(codes) and summary["grouped_by"] == "lesion_id"
    assert train[0].group == train[1].group == "HAM_0000000"
    val, _ = load_labelled(root, "val", classes="melanoma")
    assert [item.label for item in val] == ["melanoma", "not_melanoma"]  # MEL, NV
    assert val[0].group == "ISIC_0000007"  # no grouping row: the image groups alone


# --------------------------------------------------------------------------- ISIC 2019

def test_isic2019_unk_is_skipped_and_lesions_stay_together(tmp_path):
    root = tmp_path / "ISIC2019"
    codes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    truth, meta = [], []
    for i in range(24):
        stem = f"ISIC_{i:07d}" + ("_downsampled" if i == 5 else "")
        write_image(str(root / "ISIC_2019_Training_Input" / f"{stem}.jpg"), i)
        hot = 8 if i == 23 else i % 8
        truth.append([stem] + [float(j == hot) for j in range(9)])
        meta.append([stem, "50", "anterior torso", f"HAM_{i // 3:07d}" if i < 18 else "", "male"])
    write_csv(str(root / "ISIC_2019_Training_GroundTruth.csv"), ["image"] + codes, truth)
    write_csv(str(root / "ISIC_2019_Training_Metadata.csv"),
              ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"], meta)
    items, summary = load_labelled(root, "all", classes="isic2019")
    assert summary["layout"] == "isic2019" and summary["images"] == 23 and summary["grouped_by"] == "lesion_id"
    assert summary["classes"] == {"MEL": 3, "NV": 3, "BCC": 3, "AK": 3, "BKL": 3, "DF": 3, "VASC": 3, "SCC": 2}
    assert len(summary["skipped"]) == 1 and "UNK" in summary["skipped"][0]["reason"]
    assert "ISIC_0000005_downsampled" in stems(items)
    groups = subset_of_groups(root, classes="isic2019", split=(0.5, 0.25, 0.25))
    assert all(len(subsets) == 1 for subsets in groups.values()) and len(groups) == 6 + 5
    assert load_labelled(root, "all", classes="binary")[1]["classes"] == {"benign": 12, "malignant": 11}
    with pytest.raises(SchemeError, match="scc"):
        load_labelled(root, classes="isic2018")


# --------------------------------------------------------------------------- ISIC 2020

def test_isic2020_archive_names(tmp_path):
    root = tmp_path / "ISIC2020"
    for i in range(4):
        write_image(str(root / "ISIC_2020_Training_JPEG" / "train" / f"ISIC_{i:07d}.jpg"), i)
    write_csv(str(root / "ISIC_2020_Training_GroundTruth_v2.csv"),
              ["image_name", "patient_id", "lesion_id", "sex", "age_approx", "anatom_site_general_challenge",
               "diagnosis", "benign_malignant", "target"],
              [[f"ISIC_{i:07d}", "IP_1", f"IL_{i}", "male", "45", "torso", "nevus", "benign", int(i == 0)]
               for i in range(4)])
    items, summary = load_labelled(root, "all", classes="melanoma")
    assert summary["layout"] == "isic2020" and summary["groups"] == 1
    assert [item.class_index for item in items] == [1, 0, 0, 0]


def test_isic2020_patients_stay_in_one_subset(tmp_path):
    root = tmp_path / "siim-isic-melanoma-classification"
    rows = []
    for i in range(30):
        stem = f"ISIC_{i:07d}"
        write_image(str(root / "jpeg" / "train" / f"{stem}.jpg"), i)
        rows.append([stem, f"IP_{i % 7:07d}", "male", "45", "torso", "nevus", "benign", int(i % 5 == 0)])
    open(root / "jpeg" / "train" / "ISIC_0000000.dcm", "wb").close()
    os.makedirs(root / "train")
    write_csv(str(root / "train.csv"), ["image_name", "patient_id", "sex", "age_approx",
                                        "anatom_site_general_challenge", "diagnosis", "benign_malignant",
                                        "target"], rows)
    items, summary = load_labelled(root, "all", classes="melanoma")
    assert summary["layout"] == "isic2020" and summary["grouped_by"] == "patient_id" and summary["groups"] == 7
    assert summary["classes"] == {"not_melanoma": 24, "melanoma": 6} and not summary["skipped"]
    for seed in (0, 1):
        groups = subset_of_groups(root, classes="melanoma", seed=seed, split=(0.6, 0.2, 0.2))
        assert all(len(subsets) == 1 for subsets in groups.values())
        assert set().union(*groups.values()) == {"train", "val", "test"}


# --------------------------------------------------------------------------- ISIC 2024

def jpeg_bytes(seed):
    """A small JPEG file's bytes."""
    buffer = io.BytesIO()
    write = np.random.default_rng(seed).integers(0, 256, SIZE + (3,), dtype=np.uint8)
    Image.fromarray(write).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_isic2024_hdf5_crops_with_a_corrupt_entry(tmp_path):
    h5py = pytest.importorskip("h5py")
    root = tmp_path / "isic-2024-challenge"
    os.makedirs(root)
    rows = []
    with h5py.File(root / "train-image.hdf5", "w") as handle:
        for i in range(12):
            key = f"ISIC_{i:07d}"
            data = b"\xff\xd8 not a jpeg" if i == 4 else jpeg_bytes(i)
            if i == 5:  # some re-packagings store the bytes as a uint8 array
                handle.create_dataset(key, data=np.frombuffer(data, np.uint8))
            else:  # JPEG bytes as one string scalar, as the challenge ships them
                handle.create_dataset(key, data=np.bytes_(data))
            rows.append([key, int(i % 4 == 0), f"IP_{i % 3:07d}", "3.0", "Benign"])
    rows.append(["ISIC_0000099", 0, "IP_0000000", "3.0", "Benign"])  # a row without a crop
    write_csv(str(root / "train-metadata.csv"), ["isic_id", "target", "patient_id", "clin_size_long_diam_mm",
                                                 "iddx_1"], rows)
    items, summary = load_labelled(root, "all", classes="binary")
    assert summary["layout"] == "isic2024" and summary["grouped_by"] == "patient_id" and len(items) == 12
    assert summary["classes"] == {"benign": 9, "malignant": 3} and len(summary["skipped"]) == 1
    assert items[0].key == "ISIC_0000000" and items[0].path.endswith("train-image.hdf5") and items[0].width is None
    assert read_image(items[1]).shape == read_image(items[5]).shape == SIZE + (3,)
    skipped = []
    images = [read_image_or_skip(item, skipped) for item in items]
    assert sum(image is None for image in images) == 1 and skipped[0]["file"].endswith("[ISIC_0000004]")
    groups = subset_of_groups(root, classes="binary", split=(0.34, 0.33, 0.33))
    assert all(len(subsets) == 1 for subsets in groups.values())
    with pytest.raises(SchemeError, match="malignant"):
        load_labelled(root, classes="melanoma")  # "malignant" does not say melanoma


def test_isic2024_crops_as_files(tmp_path):
    root = tmp_path / "isic-2024-challenge"
    for i in range(3):
        write_image(str(root / "train-image" / "image" / f"ISIC_{i:07d}.jpg"), i)
    write_csv(str(root / "train-metadata.csv"), ["isic_id", "target", "patient_id"],
              [[f"ISIC_{i:07d}", int(i == 2), f"IP_{i}"] for i in range(3)])
    items, summary = load_labelled(root, "all", classes="binary")
    assert summary["layout"] == "isic2024" and [item.label for item in items] == ["benign", "benign", "malignant"]
    assert items[0].key is None and items[0].width == SIZE[1]


# --------------------------------------------------------------------------- HAM10000, folder

def ham_tree(root, masks):
    """Six HAM10000 images of three lesions, metadata, optionally Tschandl masks."""
    rows = []
    for i, dx in enumerate(["nv", "nv", "mel", "bkl", "bkl", "df"]):
        stem = f"ISIC_{i:07d}"
        write_image(str(root / "HAM10000_images_part_1" / f"{stem}.jpg"), i)
        if masks:
            os.makedirs(root / "HAM10000_segmentations_lesion_tschandl", exist_ok=True)
            Image.fromarray(np.full(SIZE, 255, np.uint8)).save(
                root / "HAM10000_segmentations_lesion_tschandl" / f"{stem}_segmentation.png")
        rows.append([f"HAM_{i // 2:07d}", stem, dx, "histo", "50", "male", "back"])
    write_csv(str(root / "HAM10000_metadata.csv"),
              ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"], rows)
    return root


def test_ham10000_without_masks_and_with_them(tmp_path):
    bare = ham_tree(tmp_path / "bare", masks=False)
    items, summary = load_labelled(bare, "all", classes="isic2018")
    assert summary["layout"] == "ham10000_labels" and summary["grouped_by"] == "lesion_id"
    assert [item.label for item in items] == ["NV", "NV", "MEL", "BKL", "BKL", "DF"]
    assert items[2].group == items[3].group == "HAM_0000001"
    with_masks = ham_tree(tmp_path / "masked", masks=True)
    dataset = LesionDataset()
    assert dataset.load(str(with_masks), "all", classes="isic2018")["layout"] == "ham10000"
    items, summary = load_labelled(with_masks, "all", classes="isic2018")
    assert summary["layout"] == "ham10000" and all(item.mask_path for item in items)


def test_folder_labels_skips_corrupt_images(tmp_path):
    root = tmp_path / "mine"
    rows = []
    for i in range(8):
        write_image(str(root / "images" / f"case{i}.png"), i)
        rows.append([f"case{i}.png", "melanoma" if i % 2 else "nevus", f"L{i // 2}"])
    (root / "images" / "garbage.jpg").write_bytes(b"not an image at all")
    rows.append(["garbage.jpg", "nevus", "L9"])
    with open(root / "images" / "case3.png", "r+b") as handle:  # header intact, pixels cut off
        handle.truncate(60)
    write_csv(str(root / "labels.csv"), ["image", "label", "lesion_id"], rows)
    items, summary = load_labelled(root, "all", classes="melanoma")
    assert summary["layout"] == "folder_labels" and len(items) == 8
    assert [os.path.basename(s["file"]) for s in summary["skipped"]] == ["garbage.jpg"]
    skipped = []
    assert read_image_or_skip(next(i for i in items if i.image_id == "case3"), skipped) is None
    assert len(skipped) == 1 and "case3.png" in skipped[0]["file"]
    assert all(len(s) == 1 for s in subset_of_groups(root, classes="melanoma").values())


def test_segmentation_layouts_give_the_lesion_dataset_split(lesion_folder_root):
    for subset in ("train", "val", "test"):
        dataset = LesionDataset()
        dataset.load(str(lesion_folder_root), subset, classes="isic2017")
        items, summary = load_labelled(lesion_folder_root, subset, classes="isic2017")
        assert summary["layout"] == "folder" and all(item.mask_path for item in items)
        assert stems(items) == {info["stem"] for info in dataset.image_info}
        assert [i.label for i in items] == [info["label"] for info in sorted(dataset.image_info,
                                                                              key=lambda x: x["stem"])]


def test_cross_validation_folds_through_both_loaders(lesion_folder_root):
    # --split foldK/N: the segmentation and the classification loaders give the same subsets, and the
    # N test subsets of one seed cover the 12 images once.
    seen = []
    for fold in range(3):
        split = f"fold{fold}/3,0"
        items, summary = load_labelled(lesion_folder_root, "test", classes="isic2017", split=split)
        dataset = LesionDataset()
        dataset.load(str(lesion_folder_root), "test", classes="isic2017", split=split)
        assert stems(items) == {info["stem"] for info in dataset.image_info}
        assert summary["split"] == "fold%d/3,0" % fold and summary["subsets"]["val"] == 0
        seen += sorted(stems(items))
    assert len(seen) == len(set(seen)) == 12
    # The CLI's loader (lesions.py --split): a fold with val 0 has no val subset; a bad fold names the flag.
    from skinlesion.runs import load_subset
    assert load_subset(str(lesion_folder_root), "val", "isic2017", 0, "fold1/3,0") == (None, {"layout": None,
                                                                                         "images": 0})
    train, summary = load_subset(str(lesion_folder_root), "train", "isic2017", 0, "fold1/3")
    assert summary["split"] == "fold1/3,0.1" and train.num_images == summary["images"] > 0
    with pytest.raises(ValueError, match=r"--split fold3/3"):
        load_subset(str(lesion_folder_root), "train", "isic2017", 0, "fold3/3")


def test_isic2016_carves_val_as_the_lesion_dataset_does(tmp_path, lesion_write_pair):
    root = tmp_path / "ISIC2016"
    rows = []
    for i in range(12):
        split = "Training" if i < 10 else "Test"
        stem = f"ISIC_{i:07d}"
        lesion_write_pair(str(root / f"ISBI2016_ISIC_Part1_{split}_Data" / f"{stem}.jpg"),
                          str(root / f"ISBI2016_ISIC_Part1_{split}_GroundTruth" / f"{stem}_Segmentation.png"),
                          seed=i, size=(16, 16))
        rows.append([stem, "malignant" if i % 3 == 0 else "benign"])
    for split, part in (("Training", rows[:10]), ("Test", rows[10:])):
        with open(root / f"ISBI2016_ISIC_Part3_{split}_GroundTruth.csv", "w", newline="") as handle:
            csv.writer(handle).writerows(part)
    for subset in ("train", "val", "test"):
        dataset = LesionDataset()
        dataset.load(str(root), subset, classes="binary", split=(0.6, 0.2, 0.2))
        items, summary = load_labelled(root, subset, classes="binary", split=(0.6, 0.2, 0.2))
        assert summary["official_split"] and stems(items) == {info["stem"] for info in dataset.image_info}


def test_real_ph2_for_classification(lesion_real_ph2):
    items, summary = load_labelled(lesion_real_ph2, "all", classes="ph2")
    assert summary["layout"] == "ph2" and summary["classes"] == {"common_nevus": 80, "atypical_nevus": 80,
                                                                 "melanoma": 40}
    dataset = LesionDataset()
    dataset.load(lesion_real_ph2, "test", classes="ph2")
    assert {i.image_id for i in items if i.subset == "test"} == {info["stem"] for info in dataset.image_info}


# --------------------------------------------------------------------------- errors

def test_label_only_layouts_stay_out_of_segmentation(tmp_path):
    root = tmp_path / "ISIC2019"
    write_image(str(root / "ISIC_2019_Training_Input" / "ISIC_0000000.jpg"))
    write_csv(str(root / "ISIC_2019_Training_GroundTruth.csv"), ["image", "MEL", "NV", "BCC", "AK", "BKL", "DF",
                                                                 "VASC", "SCC", "UNK"],
              [["ISIC_0000000", 1, 0, 0, 0, 0, 0, 0, 0, 0]])
    assert detect_layouts(str(root)) == []
    with pytest.raises(DatasetError, match="no dermoscopy dataset found"):
        LesionDataset().load(str(root), "train")
    with pytest.raises(DatasetError, match="has no lesion masks"):
        LesionDataset().load(str(root), "train", layout="isic2019")
    with pytest.raises(SchemeError, match="classifier"):
        LesionDataset().load(str(root), "train", classes="melanoma")
    with pytest.raises(SchemeError, match="one class"):
        load_labelled(root, classes="lesion")
    with pytest.raises(DatasetError, match="subset="):
        load_labelled(root, "holdout")
    with pytest.raises(DatasetError, match="none of subset 'test'"):
        load_labelled(root, "test", classes="isic2019")
