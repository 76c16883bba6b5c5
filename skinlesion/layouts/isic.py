"""ISIC 2016 / 2017 / 2018 Task 1 trees (lesion masks) with their Part 3 / Task 3 label CSVs."""
import csv
import functools
import os
import re

from skinlesion import schemes
from skinlesion.layouts.base import Scan
from skinlesion.layouts.files import (find_image_file, find_label_file, index_files, list_images,
                                      missing_row_note, read_csv_rows, sized_pair,
                                      skip_rows_without_image, stem_of, unique_stems, unwrap_dir)
from skinlesion.layouts.registry import Layout, register

# Official split folder names per ISIC year, per subset.
ISIC_SPLITS = {
    "isic2016": {"train": ("Training",), "test": ("Test",)},
    "isic2017": {"train": ("Training",), "val": ("Validation",), "test": ("Test_v2", "Test")},
    "isic2018": {"train": ("Training",), "val": ("Validation",), "test": ("Test",)},
}
ISIC_DATA_DIR = {
    "isic2016": "ISBI2016_ISIC_Part1_{}_Data",
    "isic2017": "ISIC-2017_{}_Data",
    "isic2018": "ISIC2018_Task1-2_{}_Input",
}
ISIC_MASK_DIR = {
    "isic2016": "ISBI2016_ISIC_Part1_{}_GroundTruth",
    "isic2017": "ISIC-2017_{}_Part1_GroundTruth",
    "isic2018": "ISIC2018_Task1_{}_GroundTruth",
}
ISIC_LABEL_CSV = {
    "isic2016": "ISBI2016_ISIC_Part3_{}_GroundTruth.csv",
    "isic2017": "ISIC-2017_{}_Part3_GroundTruth.csv",
    "isic2018": "ISIC2018_Task3_{}_GroundTruth.csv",
}
ISIC_EXPECTED = {
    "isic2018": "ISIC2018_Task1-2_{Training,Validation,Test}_Input/ + "
                "ISIC2018_Task1_{...}_GroundTruth/ (+ ISIC2018_Task3_Training_GroundTruth.csv)",
    "isic2017": "ISIC-2017_{Training,Validation,Test_v2}_Data/ + ISIC-2017_{...}_Part1_GroundTruth/ "
                "(+ ISIC-2017_{...}_Part3_GroundTruth.csv)",
    "isic2016": "ISBI2016_ISIC_Part1_{Training,Test}_Data/ + ISBI2016_ISIC_Part1_{...}_GroundTruth/ "
                "(+ ISBI2016_ISIC_Part3_Training_GroundTruth.csv)",
}


def detect_isic(layout, directory, names):
    """True when any official data folder of ``layout`` is among ``names``."""
    return any(ISIC_DATA_DIR[layout].format(split) in names
               for options in ISIC_SPLITS[layout].values() for split in options)


def _isic_labels(layout, csv_path, scan):
    """Parse an ISIC Part 3 / Task 3 ground-truth CSV into {stem: (raw_label, note)}.

    ISIC 2016: no header, "id,benign|malignant" (or 0/1). ISIC 2017:
    image_id,melanoma,seborrheic_keratosis (0/1; neither = nevus). ISIC 2018:
    image,MEL,NV,... one-hot.
    """
    try:
        rows = read_csv_rows(csv_path)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        scan.skip(csv_path, f"label file unreadable ({err}); images keep no label")
        return {}
    labels = {}
    name = os.path.basename(csv_path)
    if layout == "isic2016":
        for row_no, row in enumerate(rows, start=1):
            if len(row) < 2:
                continue
            if schemes.normalise_raw("isic2016", row[1]) is None:
                if row_no == 1:  # a header line some copies carry
                    continue
                labels[row[0]] = (None, f"{name} row {row_no}: unknown label {row[1]!r}")
                continue
            raw = "malignant" if schemes.normalise_raw("isic2016", row[1]) == "malignant" else "benign"
            labels[row[0]] = (raw, None)
        return labels
    if not rows:
        return labels
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if layout == "isic2017":
        columns = {h.lower(): i for i, h in enumerate(header)}
        if not {"image_id", "melanoma", "seborrheic_keratosis"} <= set(columns):
            scan.skip(csv_path, f"expected columns image_id,melanoma,seborrheic_keratosis, got {header}")
            return {}
        for row_no, row in enumerate(body, start=2):
            try:
                mel = float(row[columns["melanoma"]]) >= 0.5
                sk = float(row[columns["seborrheic_keratosis"]]) >= 0.5
            except (ValueError, IndexError):
                labels[row[0]] = (None, f"{name} row {row_no}: unreadable values {row[1:]}")
                continue
            if mel and sk:
                labels[row[0]] = (None, f"{name} row {row_no}: both melanoma and seborrheic_keratosis set")
            else:
                labels[row[0]] = ("melanoma" if mel else "seborrheic_keratosis" if sk else "nevus", None)
        return labels
    # isic2018: one-hot over the diagnosis columns.
    codes = [h for h in header[1:] if h in schemes.RAW_DIAGNOSIS["isic2018"]]
    if not codes:
        scan.skip(csv_path, f"expected columns image,MEL,NV,BCC,AKIEC,BKL,DF,VASC, got {header}")
        return {}
    positions = [header.index(c) for c in codes]
    for row_no, row in enumerate(body, start=2):
        try:
            values = [float(row[p]) for p in positions]
        except (ValueError, IndexError):
            labels[row[0]] = (None, f"{name} row {row_no}: unreadable values {row[1:]}")
            continue
        hot = [c for c, v in zip(codes, values) if v >= 0.5]
        if len(hot) != 1:
            labels[row[0]] = (None, f"{name} row {row_no}: expected exactly one class set, got {hot}")
        else:
            labels[row[0]] = (hot[0], None)
    return labels


def _task3_labels(root, names, scan):
    """All ISIC 2018 Task 3 labels under ``root``: {stem: (raw_label, note)}.

    Task 3 images are mostly not Task 1 images, so every Task 3 file is read
    and the caller keeps the rows whose image is present, without warning
    about the rest.
    """
    all_labels = {}
    for name in sorted(names):
        match = re.fullmatch(r"ISIC2018_Task3_\w+_GroundTruth(\.csv)?", name)
        if match:
            path = os.path.join(root, name)
            csv_path = path if match.group(1) else find_label_file(root, name + ".csv")
            if csv_path and os.path.isfile(csv_path) and csv_path not in scan.label_files:
                all_labels.update(_isic_labels("isic2018", csv_path, scan))
                scan.label_files.append(csv_path)
    return all_labels


def scan_isic(layout, root, subsets, with_masks=True):
    """Scan an ISIC 2016/2017/2018 Task 1 tree for the official splits behind ``subsets``.

    subsets: iterable of "train"/"val"/"test"; ISIC 2016 has no val folder
    (the caller carves val out of train). with_masks: False reads images and
    labels only (records without masks, see files.sized_pair).
    """
    scan = Scan(layout, root, official_splits=True)
    names = set(os.listdir(root))
    all_labels = _task3_labels(root, names, scan) if layout == "isic2018" else {}
    seen = {}
    for subset in subsets:
        for split_name in ISIC_SPLITS[layout].get(subset, ()):
            data_dir = ISIC_DATA_DIR[layout].format(split_name)
            if data_dir not in names:
                continue
            data_dir = unwrap_dir(os.path.join(root, data_dir))
            mask_dir_name = ISIC_MASK_DIR[layout].format(split_name)
            masks = index_files(unwrap_dir(os.path.join(root, mask_dir_name)))
            labels, csv_path = all_labels, None
            if layout != "isic2018":
                labels = {}
                csv_path = find_label_file(root, ISIC_LABEL_CSV[layout].format(split_name))
                if csv_path:
                    labels = _isic_labels(layout, csv_path, scan)
                    scan.label_files.append(csv_path)
            label_names = os.path.basename(csv_path) if csv_path else scan.label_file_names()
            images = list_images(data_dir)
            if csv_path:
                skip_rows_without_image(scan, csv_path, dict.fromkeys(labels), map(stem_of, images),
                                        lambda stem: f"no such image in {data_dir}")
            for stem, image_path in unique_stems(scan, images, seen, name_first=False):
                mask_path = find_image_file(masks, f"{stem}_segmentation", extensions=(".png",))
                mask_path, size = sized_pair(scan, image_path, mask_path,
                                             f"{mask_dir_name}/{stem}_segmentation.png", with_masks)
                if size is None:
                    continue
                raw, note = labels.get(stem, (None, None))
                scan.add(stem, image_path, mask_path, size, raw_label=raw,
                         diagnosis=schemes.normalise_raw(layout, raw), split=subset,
                         label_note=missing_row_note(raw, note, label_names))
    if scan.label_files:
        scan.vocabulary = schemes.LAYOUT_VOCABULARY[layout]
    return scan


for _year in ("isic2018", "isic2017", "isic2016"):
    register(Layout(name=_year, expected=ISIC_EXPECTED[_year],
                    detect=functools.partial(detect_isic, _year),
                    scan=functools.partial(scan_isic, _year)))
