"""What the label-only layouts share: records without masks from an image list and a label table.

A label-only scanner gathers its images ({stem: path}), its labels
({stem: (raw label or None, note or None, row number or None)}) and its
groups ({stem: lesion or patient id}), then calls ``add_labelled_images``,
which skips label rows without an image and images with an unreadable
header the way every layout does, and adds one Record (mask_path None) per
usable image.
"""
import csv
import os

from skinlesion import schemes
from skinlesion.layouts.files import (check_image, missing_row_note, read_csv_columns,
                                      skip_rows_without_image)

# What read_csv_columns raises for a file that cannot be used.
CSV_ERRORS = (OSError, UnicodeDecodeError, csv.Error, ValueError)


def read_label_columns(scan, path, required, optional=(), labels=True):
    """``read_csv_columns`` rows of a label file, or [] after recording why it is unusable.

    labels: whether the file gives labels (it then joins ``scan.label_files``)
    or only groups.
    """
    try:
        rows = read_csv_columns(scan, path, required, optional)
    except CSV_ERRORS as err:
        scan.skip(path, f"{'label' if labels else 'metadata'} file unreadable ({err}); "
                        f"images keep no {'label' if labels else 'group'}")
        return []
    if labels:
        scan.label_files.append(path)
    return rows


def one_hot_labels(scan, path, id_column, codes):
    """Labels of a one-hot ground-truth CSV (ISIC 2018 Task 3, ISIC 2019): {stem: (code, note, row)}.

    codes: the class columns; a row must set exactly one of them (>= 0.5),
    otherwise its label is None with a note saying why.
    """
    labels = {}
    name = os.path.basename(path)
    for row_no, (stem, *values) in read_label_columns(scan, path, (id_column,) + tuple(codes)):
        try:
            hot = [code for code, value in zip(codes, values) if float(value) >= 0.5]
        except ValueError:
            labels[stem] = (None, f"{name} row {row_no}: unreadable values {values}", row_no)
            continue
        if len(hot) == 1:
            labels[stem] = (hot[0], None, row_no)
        else:
            labels[stem] = (None, f"{name} row {row_no}: expected exactly one class set, got {hot}", row_no)
    return labels


def group_ids(scan, path, id_column, group_column):
    """{stem: group id} from a metadata CSV (empty ids left out, so those images group alone)."""
    rows = read_label_columns(scan, path, (id_column, group_column), labels=False)
    return {stem: group for _, (stem, group) in rows if group}


def add_labelled_images(scan, raw_key, present, labels, label_path=None, where="the image folder",
                        groups=None, split=None, check=True):
    """Add one mask-less Record per image of ``present``; return the number added.

    raw_key: the schemes.RAW_DIAGNOSIS key the raw labels are written in.
    present: {stem: image path}. labels: {stem: (raw label or None, note or
    None, row number or None)} read from ``label_path`` (None when there is
    no label file: the images are unlabelled); its rows without an image are
    skipped, naming ``where``.
    groups: {stem: lesion / patient id}; images without one group alone.
    split: the official subset of these images, or None. check: read each
    image header (False for images inside one container file, e.g. HDF5,
    whose sizes stay None until decoded).
    """
    groups = groups or {}
    if label_path is not None:
        skip_rows_without_image(scan, label_path, {stem: row[2] for stem, row in labels.items()}, present,
                                lambda stem: f"no such image in {where}")
    label_names = os.path.basename(label_path) if label_path else ""
    added = 0
    for stem, image_path in sorted(present.items()):
        size = check_image(scan, image_path) if check else (None, None)
        if size is None:
            continue
        raw, note, _ = labels.get(stem, (None, None, None))
        diagnosis = schemes.normalise_raw(raw_key, raw)
        if raw is not None and diagnosis is None:
            raw, note = None, f"unknown label {raw!r} in {label_names}"
        scan.add(stem, image_path, None, size, lesion_id=groups.get(stem), raw_label=raw, diagnosis=diagnosis,
                 split=split, label_note=missing_row_note(raw, note, label_names))
        added += 1
    if scan.label_files:
        scan.vocabulary = schemes.LAYOUT_VOCABULARY[raw_key]
    return added
