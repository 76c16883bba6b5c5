"""A plain folder: images/ + masks/ (<stem>.png or <stem>_segmentation.png) + optional labels.csv.

labels.csv has a header row: ``image`` (file name or stem), ``label`` (a
diagnosis), optional ``lesion_id``, and optional dermoscopic criteria
columns (skinlesion.criteria), any of:

    asymmetry            0, 1 or 2
    pigment_network      typical / atypical (or T / AT)
    dots_globules        absent / typical / atypical (or A / T / AT)
    streaks, regression_areas, blue_whitish_veil, task2_<attribute>
                         present / absent (P / A, yes / no, 1 / 0)
    colours              colour names joined by ";", e.g. light_brown;dark_brown
    colour_<name>        one column per colour (white, red, light_brown,
                         dark_brown, blue_gray, black) marked X / 1 / yes

An empty cell leaves that criterion unknown. The colour_<name> columns
build the colours set (empty when none is marked) where the colours cell is
empty or absent. A bad cell leaves its criterion unknown for that image,
with one warning line naming the row and column.
"""
import csv
import os

from skinlesion import criteria as crit
from skinlesion import schemes
from skinlesion.layouts.base import Scan
from skinlesion.layouts.criteria_cells import read_criteria
from skinlesion.layouts.files import (find_image_file, index_files, list_images, missing_row_note,
                                      read_csv_table, rows_with_columns, sized_pair,
                                      skip_rows_without_image, stem_of, unique_stems)
from skinlesion.layouts.registry import Layout, register


def detect_folder(directory, names):
    """True when ``directory`` has an images/ sub-folder."""
    return "images" in names and os.path.isdir(os.path.join(directory, "images"))


def _criteria_columns(header):
    """([(criterion, column index)], [(colour, column index)]) of labels.csv's criteria columns."""
    criteria_columns = [(name, i) for i, name in enumerate(header) if name in crit.CRITERIA]
    colour_columns = [(name[len("colour_"):], i) for i, name in enumerate(header)
                      if name.startswith("colour_") and name[len("colour_"):] in crit.COLOURS]
    return criteria_columns, colour_columns


def _row_criteria(scan, labels_path, header, columns, image, row, row_no):
    """The typed criteria of one labels.csv row; None when the file has no criteria columns."""
    criteria_columns, colour_columns = columns
    if not criteria_columns and not colour_columns:
        return None

    def cells(pairs):
        """[(name, column title, cell)] of this row for (name, column index) pairs."""
        return [(name, header[i], row[i] if i < len(row) else None) for name, i in pairs]

    return read_criteria(scan, labels_path, f"row {row_no}", image, cells(criteria_columns),
                         cells(colour_columns) or None)


def _folder_labels(labels_path, scan):
    """Read labels.csv: {stem: (label or None, lesion_id or None, row number, criteria or None)}, or {}."""
    try:
        header, rows = read_csv_table(labels_path)
        col_image = next(header.index(c) for c in ("image", "image_id", "file") if c in header)
        col_label = next(header.index(c) for c in ("label", "diagnosis", "dx") if c in header)
    except (OSError, UnicodeDecodeError, csv.Error, StopIteration) as err:
        scan.skip(labels_path, f"expected a header with columns image,label ({err or 'missing'}); "
                               f"images keep no label")
        return {}
    col_lesion = header.index("lesion_id") if "lesion_id" in header else None
    columns = _criteria_columns(header)
    scan.label_files.append(labels_path)
    labels = {}
    for row_no, row in rows_with_columns(scan, labels_path, rows, (col_image, col_label)):
        lesion = row[col_lesion] if col_lesion is not None and col_lesion < len(row) else None
        stem = stem_of(row[col_image])
        criteria = _row_criteria(scan, labels_path, header, columns, stem, row, row_no)
        labels[stem] = (row[col_label] or None, lesion or None, row_no, criteria)
    return labels


def scan_folder(root, subsets=None, with_masks=True):
    """Scan images/ + masks/ (<stem>.png or <stem>_segmentation.png) + optional labels.csv.

    labels.csv columns: image (file name or stem), label (any diagnosis name
    in schemes.FOLDER_ALIASES), optional lesion_id (to keep several images of
    one lesion in one subset), optional criteria columns (module docstring;
    Record.criteria). subsets: ignored (no official splits).
    with_masks: False reads images and labels only (records without masks).
    """
    scan = Scan("folder", root)
    masks = index_files(os.path.join(root, "masks"))
    images = list_images(os.path.join(root, "images"))
    labels_path = os.path.join(root, "labels.csv")
    labels = _folder_labels(labels_path, scan) if os.path.isfile(labels_path) else {}
    present = dict(unique_stems(scan, images))
    skip_rows_without_image(scan, labels_path, {stem: row[2] for stem, row in labels.items()}, present,
                            lambda stem: "no such image in images/")
    for stem, image_path in sorted(present.items()):
        mask_path = find_image_file(masks, f"{stem}_segmentation", stem)
        mask_path, size = sized_pair(scan, image_path, mask_path,
                                     f"masks/{stem}.png or masks/{stem}_segmentation.png", with_masks)
        if size is None:
            continue
        raw, lesion_id, _, criteria = labels.get(stem, (None, None, None, None))
        diagnosis = schemes.normalise_raw("folder", raw)
        note = missing_row_note(raw, None, scan.label_file_names())
        if raw is not None and diagnosis is None:
            note = (f"label {raw!r} in labels.csv is not a known diagnosis "
                    f"(use e.g. {', '.join(schemes.DIAGNOSES[:5])}, ...)")
        scan.add(stem, image_path, mask_path, size, lesion_id=lesion_id, raw_label=raw,
                 diagnosis=diagnosis, label_note=note, criteria=criteria)
    scan.vocabulary = frozenset(r.diagnosis for r in scan.records if r.diagnosis)
    return scan


register(Layout(name="folder",
                expected="images/ + masks/<stem>.png or masks/<stem>_segmentation.png "
                         "(+ labels.csv: image,label)",
                detect=detect_folder, scan=scan_folder, has_groups=True,
                group_key="lesion_id"))
