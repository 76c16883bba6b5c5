"""HAM10000: images in part_1 / part_2, Tschandl's lesion masks, metadata with lesion_id and dx."""
import csv
import os

from skinlesion import schemes
from skinlesion.layouts.base import Scan
from skinlesion.layouts.files import (find_image_file, find_label_file, index_files, list_images,
                                      missing_row_note, read_csv_table, rows_with_columns, sized_pair,
                                      skip_rows_without_image, unique_stems, unwrap_dir)
from skinlesion.layouts.registry import Layout, register

HAM_IMAGE_DIRS = ("HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images")
HAM_MASK_DIR = "HAM10000_segmentations_lesion_tschandl"
HAM_METADATA = "HAM10000_metadata.csv"


def _ham_metadata(meta_path, scan):
    """Read HAM10000_metadata.csv: {image_id: (lesion_id, dx, row number)}, or None when unusable."""
    try:
        header, rows = read_csv_table(meta_path)
        col_lesion, col_image, col_dx = (header.index(c) for c in ("lesion_id", "image_id", "dx"))
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as err:
        scan.skip(meta_path, f"metadata unreadable or lacks lesion_id,image_id,dx columns ({err})")
        return None
    scan.label_files.append(meta_path)
    return {row[col_image]: (row[col_lesion], row[col_dx], row_no)
            for row_no, row in rows_with_columns(scan, meta_path, rows, (col_lesion, col_image, col_dx))}


def scan_ham10000(root, subsets=None, with_masks=True):
    """Scan a HAM10000 tree: images in part_1/part_2, Tschandl masks, metadata (lesion_id, dx).

    subsets: ignored (HAM10000 has no official splits; LesionDataset splits by lesion_id).
    with_masks: False reads images and metadata only (records without masks).
    """
    scan = Scan("ham10000", root)
    masks = index_files(os.path.join(root, HAM_MASK_DIR))
    images = []
    for name in HAM_IMAGE_DIRS:
        images.extend(list_images(unwrap_dir(os.path.join(root, name))))
    meta_path = find_label_file(root, HAM_METADATA)
    metadata = _ham_metadata(meta_path, scan) if meta_path else None
    if metadata is None:
        metadata, meta_path = {}, None
    present = dict(unique_stems(scan, images))
    skip_rows_without_image(scan, meta_path, {stem: row[2] for stem, row in metadata.items()}, present,
                            lambda stem: f"no such image in {' or '.join(HAM_IMAGE_DIRS[:2])}")
    for stem, image_path in sorted(present.items()):
        mask_path = find_image_file(masks, f"{stem}_segmentation", extensions=(".png",))
        mask_path, size = sized_pair(scan, image_path, mask_path, f"{HAM_MASK_DIR}/{stem}_segmentation.png",
                                     with_masks)
        if size is None:
            continue
        lesion_id, raw, _ = metadata.get(stem, (stem, None, None))
        diagnosis = schemes.normalise_raw("ham10000", raw)
        note = missing_row_note(raw, None, scan.label_file_names())
        if raw is not None and diagnosis is None:
            note, raw = f"unknown dx {raw!r} in {os.path.basename(meta_path)}", None
        scan.add(stem, image_path, mask_path, size, lesion_id=lesion_id, raw_label=raw,
                 diagnosis=diagnosis, label_note=note)
    if scan.label_files:
        scan.vocabulary = schemes.LAYOUT_VOCABULARY["ham10000"]
    return scan


register(Layout(name="ham10000",
                expected="HAM10000_images_part_1/, HAM10000_images_part_2/ + "
                         "HAM10000_segmentations_lesion_tschandl/ (+ HAM10000_metadata.csv)",
                detect=lambda directory, names: any(d in names for d in HAM_IMAGE_DIRS),
                scan=scan_ham10000, has_groups=True, group_key="lesion_id"))
