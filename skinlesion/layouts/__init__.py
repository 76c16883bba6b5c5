"""Readers for the public dermoscopy folder layouts: find images, masks and raw labels.

Each layout scanner walks one dataset's official folder tree and returns a
``Scan``: one ``Record`` per usable image (image path, mask path, size,
lesion id, raw label, official split) plus the list of files it skipped and
why. Scanning reads only file headers (PIL opens lazily), so it is cheap;
pixel decoding happens later in LesionDataset.load_image / load_mask.

Modules: ``base`` (Record, Scan, DatasetError), ``files`` (listing, stems,
headers, masks, label CSVs and the checks every layout shares),
``registry`` (the ``Layout`` entries; detect_layouts, resolve_layout,
scan_layout), and one module per layout family: ``isic`` (ISIC 2016 / 2017
/ 2018 Task 1 with Part 3 / Task 3 labels), ``isic2018_task2`` (ISIC 2018
Task 2 attribute masks, read when asked for: it defers to ``isic2018``,
whose input folders it shares), ``ph2``, ``ham10000`` (with the
Tschandl lesion masks) and ``folder`` (images/ + masks/ + optional
labels.csv). The label-only layouts (no masks; they feed the classifier
through skinlesion.labelled): ``isic2024`` (train-image.hdf5),
``isic2020``, ``isic2019``, ``isic2018_task3``, ``isic2017_part3``,
``isic2017_classes`` (a copy with a melanoma column only),
``ham10000_labels`` and ``folder_labels``; ``labelonly`` holds what they share.

Adding a layout (e.g. ISIC 2019) takes one new module and one line here:

1. ``skinlesion/layouts/isic2019.py`` with
   ``detect(directory, names) -> bool`` (are this layout's marker folders
   among ``names``, the entries of ``directory``?) and
   ``scan(root, subsets=None) -> Scan`` (build ``Scan("isic2019", root)``,
   use the ``files`` helpers: ``list_images``, ``unique_stems``,
   ``skip_rows_without_image``, ``check_pair``, ``scan.add(...)``), ending
   with one registry entry::

       register(Layout(name="isic2019", expected="ISIC_2019_Training_Input/ + ...",
                       detect=detect, scan=scan, has_masks=False, has_groups=True))

2. its name in the import line below. The import order is the detection
   order (which layout wins when a parent folder holds several datasets);
   ``folder`` stays last, since any folder with an images/ sub-folder is one.

``folder.py`` is the shortest complete example. ``has_masks`` /
``has_labels`` / ``has_groups`` declare what the layout's files give.
LesionDataset reads a mask for every record it loads, so a label-only
layout (``has_masks=False``: records with ``mask_path=None``, sizes from
``image_size`` instead of ``check_pair``) serves readers that need no mask,
such as the classifier's.

Detection has a purpose (registry.PURPOSES): "segmentation", the default
and what LesionDataset reads, sees only layouts with masks, so a label-only
layout never takes a folder from it; "classification" sees every layout
with labels. The label-only layouts that read a mask layout's tree without
its masks (``isic2017_part3``, ``ham10000_labels``, ``folder_labels``) are
detected only where those masks are absent.

``EXPECTED`` ({name: what it looks like on disk}) and ``LAYOUT_ORDER`` (the
names in detection order) are read from the registry whenever they are
used, so they always list every registered segmentation layout;
``registered("classification")`` lists the others too.
"""
from skinlesion.layouts.base import DatasetError, Record, Scan, log
from skinlesion.layouts.files import (IMAGE_EXTENSIONS, check_image, check_pair, find_image_file,
                                      find_label_file, image_size, index_files, is_image_file, list_images,
                                      missing_row_note, read_csv_columns, read_csv_rows, read_csv_table,
                                      read_mask_bool, rows_with_columns, sized_pair, skip_rows_without_image,
                                      stem_of, unique_stems, unwrap_dir)
from skinlesion.layouts.registry import (PURPOSES, Layout, detect_layouts, get_layout, register, registered,
                                         resolve_layout, scan_layout, unregister)
# The registry: importing a layout module registers it; this order is the detection order.
from skinlesion.layouts import isic, isic2018_task2, ph2, ham10000, folder  # noqa: F401  isort: skip
# Label-only layouts (has_masks=False), after the segmentation ones.
from skinlesion.layouts import isic2024, isic2020, isic2019, isic2018_task3, isic2017_part3, isic2017_classes, ham10000_labels, folder_labels  # noqa: F401,E501  isort: skip
from skinlesion.layouts.isic import (ISIC_DATA_DIR, ISIC_LABEL_CSV, ISIC_MASK_DIR, ISIC_SPLITS,
                                     scan_isic)
from skinlesion.layouts.ham10000 import HAM_IMAGE_DIRS, HAM_MASK_DIR, HAM_METADATA, scan_ham10000
from skinlesion.layouts.ph2 import PH2_DIAGNOSIS_COLUMNS, PH2_IMAGES_DIR, PH2_SHEET, scan_ph2
from skinlesion.layouts.folder import scan_folder

__all__ = [
    # types
    "DatasetError", "Record", "Scan", "Layout", "log",
    # registry, detection, scanning
    "register", "unregister", "registered", "get_layout", "detect_layouts", "resolve_layout", "scan_layout",
    "EXPECTED", "LAYOUT_ORDER", "PURPOSES",
    # scanners and their layouts' folder names
    "scan_isic", "scan_ham10000", "scan_ph2", "scan_folder",
    "ISIC_SPLITS", "ISIC_DATA_DIR", "ISIC_MASK_DIR", "ISIC_LABEL_CSV",
    "HAM_IMAGE_DIRS", "HAM_MASK_DIR", "HAM_METADATA", "PH2_IMAGES_DIR", "PH2_SHEET", "PH2_DIAGNOSIS_COLUMNS",
    # file helpers
    "IMAGE_EXTENSIONS", "is_image_file", "list_images", "index_files", "find_image_file", "unwrap_dir",
    "stem_of", "unique_stems", "skip_rows_without_image", "image_size", "read_mask_bool", "check_pair",
    "read_csv_rows", "read_csv_table", "rows_with_columns", "find_label_file", "missing_row_note",
    "check_image", "sized_pair", "read_csv_columns",
    # layout modules
    "isic", "isic2018_task2", "ph2", "ham10000", "folder", "isic2024", "isic2020", "isic2019", "isic2018_task3",
    "isic2017_part3", "isic2017_classes", "ham10000_labels", "folder_labels",
]


def __getattr__(name):
    """EXPECTED and LAYOUT_ORDER, derived from the registry at each use."""
    if name == "EXPECTED":
        return {layout.name: layout.expected for layout in registered()}
    if name == "LAYOUT_ORDER":
        return tuple(layout.name for layout in registered())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
