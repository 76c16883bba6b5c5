"""Readers for the public dermoscopy folder layouts: find images, masks and raw labels.

Each layout scanner walks one dataset's official folder tree and returns a
``Scan``: one ``Record`` per usable image (image path, mask path, size,
lesion id, raw label, official split) plus the list of files it skipped and
why. Scanning reads only file headers (PIL opens lazily), so it is cheap;
pixel decoding happens later in LesionDataset.load_image / load_mask.

Supported layouts (see ``EXPECTED``): ISIC 2016 / 2017 / 2018 Task 1 (with
Part 3 / Task 3 labels), HAM10000 (with the Tschandl lesion masks), PH2 and
a plain folder (images/ + masks/ + optional labels.csv).
"""
import csv
import logging
import os
import re
from dataclasses import dataclass, field

import numpy as np

from skinlesion import schemes

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset path holds nothing usable, or a subset it was asked for is absent."""


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")

# What each layout looks like on disk, for detection and for error messages.
EXPECTED = {
    "isic2018": "ISIC2018_Task1-2_{Training,Validation,Test}_Input/ + "
                "ISIC2018_Task1_{...}_GroundTruth/ (+ ISIC2018_Task3_Training_GroundTruth.csv)",
    "isic2017": "ISIC-2017_{Training,Validation,Test_v2}_Data/ + ISIC-2017_{...}_Part1_GroundTruth/ "
                "(+ ISIC-2017_{...}_Part3_GroundTruth.csv)",
    "isic2016": "ISBI2016_ISIC_Part1_{Training,Test}_Data/ + ISBI2016_ISIC_Part1_{...}_GroundTruth/ "
                "(+ ISBI2016_ISIC_Part3_Training_GroundTruth.csv)",
    "ph2": "'PH2 Dataset images'/IMDxxx/IMDxxx_Dermoscopic_Image/ + IMDxxx_lesion/ (+ PH2_dataset.xlsx)",
    "ham10000": "HAM10000_images_part_1/, HAM10000_images_part_2/ + "
                "HAM10000_segmentations_lesion_tschandl/ (+ HAM10000_metadata.csv)",
    "folder": "images/ + masks/<stem>.png or masks/<stem>_segmentation.png (+ labels.csv: image,label)",
}
# Order decides which layout wins when a parent folder holds several datasets.
LAYOUT_ORDER = tuple(EXPECTED)

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
HAM_IMAGE_DIRS = ("HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images")
HAM_MASK_DIR = "HAM10000_segmentations_lesion_tschandl"
HAM_METADATA = "HAM10000_metadata.csv"
PH2_IMAGES_DIR = "PH2 Dataset images"
PH2_SHEET = "PH2_dataset.xlsx"
PH2_DIAGNOSIS_COLUMNS = ("Common Nevus", "Atypical Nevus", "Melanoma")


@dataclass
class Record:
    """One usable image of a scanned dataset (all paths absolute)."""
    stem: str
    image_path: str
    mask_path: str
    width: int
    height: int
    lesion_id: str
    raw_label: str = None       # as written in the label file, e.g. "mel"
    diagnosis: str = None       # canonical diagnosis (schemes.DIAGNOSES) or None
    split: str = None           # official subset ("train"/"val"/"test") or None
    label_note: str = None      # why raw_label is None, when a label file exists


@dataclass
class Scan:
    """What a layout scanner found under ``root``."""
    layout: str
    root: str
    records: list = field(default_factory=list)
    skipped: list = field(default_factory=list)      # [{"file": ..., "reason": ...}]
    label_files: list = field(default_factory=list)  # label files that were read
    vocabulary: frozenset = frozenset()              # canonical diagnoses the labels can give
    official_splits: bool = False

    def skip(self, file, reason):
        """Record a skipped file with one warning line that names it and the reason."""
        log.warning("Skipping %s: %s", file, reason)
        self.skipped.append({"file": str(file), "reason": reason})

    def observed_labels(self):
        """Sorted raw labels present in the records."""
        return sorted({r.raw_label for r in self.records if r.raw_label is not None})


# --------------------------------------------------------------------------- files

def is_image_file(name):
    """True for a file name with an image extension that is not an ISIC side file."""
    stem, ext = os.path.splitext(name)
    return (ext.lower() in IMAGE_EXTENSIONS and not name.startswith(".")
            and not stem.lower().endswith("_superpixels"))


def list_images(directory):
    """Sorted absolute paths of the image files directly in ``directory`` ([] if absent)."""
    if not os.path.isdir(directory):
        return []
    return sorted(os.path.join(directory, n) for n in os.listdir(directory)
                  if is_image_file(n) and os.path.isfile(os.path.join(directory, n)))


def index_files(directory):
    """{lower-case file name: absolute path} of the files in ``directory`` ({} if absent)."""
    if not os.path.isdir(directory):
        return {}
    return {n.lower(): os.path.join(directory, n) for n in os.listdir(directory)}


def unwrap_dir(path):
    """``path``, or ``path/<same name>`` when an unzip nested the folder in itself."""
    inner = os.path.join(path, os.path.basename(path))
    return inner if os.path.isdir(inner) else path


def image_size(path):
    """(width, height) of an image file from its header, after EXIF rotation.

    Raises ValueError with the reason when the header cannot be read.
    """
    from PIL import Image
    try:
        with Image.open(path) as img:
            width, height = img.size
            try:
                orientation = img.getexif().get(0x0112, 1)
            except Exception:  # a broken EXIF block is not worth skipping the image
                orientation = 1
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"unreadable file ({err})") from err
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: read_image_rgb swaps the axes
        width, height = height, width
    return int(width), int(height)


def read_mask_bool(path):
    """Read a lesion mask file as bool [H, W] with the ISIC rule (grey > 128).

    1-bit files: nonzero is lesion. RGB / RGBA / palette: converted to 8-bit
    grey first. 16-bit: scaled to 8 bits (x * 255 / 65535) when it uses more
    than 8 bits. Raises ValueError naming the file when it cannot be decoded.
    """
    from PIL import Image, ImageOps
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode == "1":
                return np.asarray(img, dtype=bool).copy()
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                grey = np.asarray(img, dtype=np.float64)
                if img.mode != "F" and grey.max(initial=0) > 255:
                    grey = grey * (255.0 / 65535.0)
                return grey > 128
            return np.asarray(img.convert("L"), dtype=np.uint8) > 128
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: cannot decode mask ({err})") from err


def check_pair(scan, image_path, mask_path, expected_mask):
    """Read both headers; return (width, height) or None after recording why the pair is skipped.

    expected_mask: the file name(s) looked for, to tell the user when it is missing.
    """
    if mask_path is None:
        scan.skip(image_path, f"no mask (expected {expected_mask})")
        return None
    try:
        size = image_size(image_path)
    except ValueError as err:
        scan.skip(image_path, f"image {err}")
        return None
    try:
        mask_size = image_size(mask_path)
    except ValueError as err:
        scan.skip(mask_path, f"mask {err}")
        return None
    if mask_size != size:
        scan.skip(mask_path, f"mask size {mask_size[0]}x{mask_size[1]} differs from image size "
                             f"{size[0]}x{size[1]} of {os.path.basename(image_path)}")
        return None
    return size


def stem_of(name):
    """File name without directory and image extension ('ISIC_1.jpg' -> 'ISIC_1')."""
    base = os.path.basename(str(name).strip())
    stem, ext = os.path.splitext(base)
    return stem if ext.lower() in IMAGE_EXTENSIONS else base


def read_csv_rows(path):
    """All rows of a CSV file as lists of stripped strings (BOM tolerated)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return [[cell.strip() for cell in row] for row in csv.reader(handle) if any(c.strip() for c in row)]


def find_label_file(root, name):
    """``root/name``, or ``root/<name without .csv>/name`` (how ISIC zips unpack); None if absent."""
    for candidate in (os.path.join(root, name),
                      os.path.join(root, os.path.splitext(name)[0], name)):
        if os.path.isfile(candidate):
            return candidate
    return None


# --------------------------------------------------------------------------- detection

def _detect_here(directory):
    """Layout names whose marker folders are directly in ``directory``."""
    try:
        names = set(os.listdir(directory))
    except OSError:
        return []
    found = []
    for layout in ("isic2018", "isic2017", "isic2016"):
        folders = [ISIC_DATA_DIR[layout].format(s) for opts in ISIC_SPLITS[layout].values() for s in opts]
        if any(f in names for f in folders):
            found.append(layout)
    if PH2_IMAGES_DIR in names:
        found.append("ph2")
    if any(d in names for d in HAM_IMAGE_DIRS):
        found.append("ham10000")
    if "images" in names and os.path.isdir(os.path.join(directory, "images")):
        found.append("folder")
    return found


def detect_layouts(path):
    """All (layout, root) pairs found at ``path`` or in its direct sub-folders.

    Those at ``path`` itself come first; within one level, LAYOUT_ORDER.
    """
    path = os.path.abspath(path)
    found = [(layout, path) for layout in LAYOUT_ORDER if layout in _detect_here(path)]
    children = sorted(os.path.join(path, n) for n in os.listdir(path)
                      if os.path.isdir(os.path.join(path, n)))
    below = []
    for child in children:
        for layout in _detect_here(child):
            below.append((layout, child))
    below.sort(key=lambda pair: (LAYOUT_ORDER.index(pair[0]), pair[1]))
    return found + below


def resolve_layout(path, layout=None):
    """Pick the (layout, root) to read at ``path``; raise DatasetError when there is none.

    layout: optional layout name to insist on (when a parent folder holds
    several datasets). Several candidates without it: the first wins and a
    warning names the others.
    """
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: dataset folder does not exist (pass a dataset root, "
                           f"or no path for the built-in synthetic set)")
    if layout is not None and layout not in EXPECTED:
        raise DatasetError(f"layout={layout!r}: unknown layout; choose one of {', '.join(EXPECTED)}")
    candidates = detect_layouts(path)
    if layout is not None:
        candidates = [c for c in candidates if c[0] == layout]
    if not candidates:
        wanted = {layout: EXPECTED[layout]} if layout else EXPECTED
        listing = "; ".join(f"{name}: {text}" for name, text in wanted.items())
        raise DatasetError(f"{path}: no dermoscopy dataset found here or in its sub-folders. "
                           f"Expected one of these layouts: {listing}")
    if len(candidates) > 1:
        others = ", ".join(f"{name} at {root}" for name, root in candidates[1:])
        log.warning("%s holds several datasets; reading %s at %s (also found: %s). Pass that "
                    "dataset's own folder or layout=... to choose.", path, candidates[0][0],
                    candidates[0][1], others)
    return candidates[0]


# --------------------------------------------------------------------------- ISIC

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


def scan_isic(layout, root, subsets):
    """Scan an ISIC 2016/2017/2018 Task 1 tree for the official splits behind ``subsets``.

    subsets: iterable of "train"/"val"/"test"; ISIC 2016 has no val folder
    (the caller carves val out of train).
    """
    scan = Scan(layout, root, official_splits=True)
    names = set(os.listdir(root))
    all_labels = {}
    if layout == "isic2018":
        # Task 3 images are mostly not Task 1 images: read every Task 3 file and
        # keep the rows whose image is present, without warning about the rest.
        for name in sorted(names):
            path = os.path.join(root, name)
            match = re.fullmatch(r"ISIC2018_Task3_\w+_GroundTruth(\.csv)?", name)
            if match:
                csv_path = path if match.group(1) else find_label_file(root, name + ".csv")
                if csv_path and os.path.isfile(csv_path) and csv_path not in scan.label_files:
                    for stem, value in _isic_labels(layout, csv_path, scan).items():
                        all_labels[stem] = value
                    scan.label_files.append(csv_path)
    seen = set()
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
            label_names = (os.path.basename(csv_path) if csv_path else
                           ", ".join(os.path.basename(f) for f in scan.label_files))
            images = list_images(data_dir)
            present = {stem_of(p) for p in images}
            for stem in sorted(set(labels) - present) if csv_path else ():
                scan.skip(csv_path, f"row for image {stem} but no such image in {data_dir}")
            for image_path in images:
                stem = stem_of(image_path)
                if stem in seen:
                    scan.skip(image_path, f"duplicate image name {stem}")
                    continue
                seen.add(stem)
                expected = f"{mask_dir_name}/{stem}_segmentation.png"
                mask_path = masks.get(f"{stem}_segmentation.png".lower())
                size = check_pair(scan, image_path, mask_path, expected)
                if size is None:
                    continue
                raw, note = labels.get(stem, (None, None))
                if raw is None and note is None and label_names:
                    note = f"no row in {label_names}"
                scan.records.append(Record(
                    stem=stem, image_path=image_path, mask_path=mask_path, width=size[0],
                    height=size[1], lesion_id=stem, raw_label=raw,
                    diagnosis=schemes.normalise_raw(layout, raw), split=subset, label_note=note))
    if scan.label_files:
        scan.vocabulary = schemes.LAYOUT_VOCABULARY[layout]
    return scan


# --------------------------------------------------------------------------- HAM10000

def scan_ham10000(root):
    """Scan a HAM10000 tree: images in part_1/part_2, Tschandl masks, metadata (lesion_id, dx)."""
    scan = Scan("ham10000", root)
    masks = index_files(os.path.join(root, HAM_MASK_DIR))
    images = []
    for name in HAM_IMAGE_DIRS:
        images.extend(list_images(unwrap_dir(os.path.join(root, name))))
    metadata = {}
    meta_path = find_label_file(root, HAM_METADATA)
    if meta_path:
        try:
            rows = read_csv_rows(meta_path)
            header = [h.lower() for h in rows[0]] if rows else []
            col_lesion, col_image, col_dx = (header.index(c) for c in ("lesion_id", "image_id", "dx"))
        except (OSError, UnicodeDecodeError, csv.Error, ValueError) as err:
            scan.skip(meta_path, f"metadata unreadable or lacks lesion_id,image_id,dx columns ({err})")
            rows, meta_path = [], None
        else:
            scan.label_files.append(meta_path)
            for row_no, row in enumerate(rows[1:], start=2):
                if len(row) <= max(col_lesion, col_image, col_dx):
                    scan.skip(meta_path, f"row {row_no}: too few columns")
                    continue
                metadata[row[col_image]] = (row[col_lesion], row[col_dx], row_no)
    present = {}
    for image_path in images:
        stem = stem_of(image_path)
        if stem in present:
            scan.skip(image_path, f"duplicate image name {stem} (also {present[stem]})")
            continue
        present[stem] = image_path
    for stem in sorted(set(metadata) - set(present)):
        scan.skip(meta_path, f"row {metadata[stem][2]} for image {stem} but no such image in "
                             f"{' or '.join(HAM_IMAGE_DIRS[:2])}")
    for stem, image_path in sorted(present.items()):
        mask_path = masks.get(f"{stem}_segmentation.png".lower())
        size = check_pair(scan, image_path, mask_path, f"{HAM_MASK_DIR}/{stem}_segmentation.png")
        if size is None:
            continue
        lesion_id, raw, _ = metadata.get(stem, (stem, None, None))
        diagnosis = schemes.normalise_raw("ham10000", raw)
        note = None
        if raw is None and meta_path:
            note = f"no row in {os.path.basename(meta_path)}"
        elif raw is not None and diagnosis is None:
            note, raw = f"unknown dx {raw!r} in {os.path.basename(meta_path)}", None
        scan.records.append(Record(stem=stem, image_path=image_path, mask_path=mask_path,
                                   width=size[0], height=size[1], lesion_id=lesion_id or stem,
                                   raw_label=raw, diagnosis=diagnosis, label_note=note))
    if scan.label_files:
        scan.vocabulary = schemes.LAYOUT_VOCABULARY["ham10000"]
    return scan


# --------------------------------------------------------------------------- PH2

def _ph2_labels(sheet_path, scan):
    """Read PH2_dataset.xlsx: {image name: (raw_label or None, note, row number)}.

    The header row (normally row 13) is found by its "Image Name" cell; the
    clinical diagnosis is whichever of Common Nevus / Atypical Nevus /
    Melanoma holds an "X".
    """
    try:
        import openpyxl
        workbook = openpyxl.load_workbook(sheet_path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises many types for a broken workbook
        scan.skip(sheet_path, f"label sheet unreadable ({err}); images keep no label")
        return None
    try:
        rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    finally:
        workbook.close()

    def norm(cell):
        """Cell text with whitespace collapsed, lower-cased ("" for empty)."""
        return " ".join(str(cell).split()).lower() if cell is not None else ""

    header_at = next((i for i, row in enumerate(rows[:60]) if "image name" in [norm(c) for c in row]), None)
    if header_at is None:
        scan.skip(sheet_path, "no 'Image Name' header row found (expected at row 13); images keep no label")
        return None
    header = [norm(c) for c in rows[header_at]]
    missing = [c for c in PH2_DIAGNOSIS_COLUMNS if c.lower() not in header]
    if missing:
        scan.skip(sheet_path, f"header row {header_at + 1} lacks columns {missing}; images keep no label")
        return None
    name_col = header.index("image name")
    diag_cols = {c: header.index(c.lower()) for c in PH2_DIAGNOSIS_COLUMNS}
    labels = {}
    for offset, row in enumerate(rows[header_at + 1:], start=header_at + 2):
        if name_col >= len(row) or row[name_col] is None or not str(row[name_col]).strip():
            continue
        name = str(row[name_col]).strip()
        marked = [c for c, col in diag_cols.items() if col < len(row) and norm(row[col]) == "x"]
        if len(marked) == 1:
            labels[name] = (marked[0], None, offset)
        else:
            labels[name] = (None, f"{os.path.basename(sheet_path)} row {offset}: "
                                  f"{'no' if not marked else 'several'} clinical diagnosis marked", offset)
    return labels


def scan_ph2(root):
    """Scan the PH2 tree: IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.* and IMDxxx_lesion/IMDxxx_lesion.*"""
    scan = Scan("ph2", root)
    images_root = os.path.join(root, PH2_IMAGES_DIR)
    sheet = os.path.join(root, PH2_SHEET)
    labels = _ph2_labels(sheet, scan) if os.path.isfile(sheet) else None
    if labels is not None:
        scan.label_files.append(sheet)
        scan.vocabulary = schemes.LAYOUT_VOCABULARY["ph2"]
    cases = sorted(n for n in os.listdir(images_root) if os.path.isdir(os.path.join(images_root, n)))
    for case in cases:
        case_dir = os.path.join(images_root, case)
        image_files = index_files(os.path.join(case_dir, f"{case}_Dermoscopic_Image"))
        mask_files = index_files(os.path.join(case_dir, f"{case}_lesion"))
        image_path = next((image_files[f"{case}{ext}".lower()] for ext in IMAGE_EXTENSIONS
                           if f"{case}{ext}".lower() in image_files), None)
        mask_path = next((mask_files[f"{case}_lesion{ext}".lower()] for ext in IMAGE_EXTENSIONS
                          if f"{case}_lesion{ext}".lower() in mask_files), None)
        if image_path is None:
            scan.skip(case_dir, f"no image (expected {case}_Dermoscopic_Image/{case}.bmp, .jpg or .png)")
            continue
        size = check_pair(scan, image_path, mask_path, f"{case}_lesion/{case}_lesion.bmp or .png")
        if size is None:
            continue
        raw, note = None, None
        if labels is not None:
            raw, note, _ = labels.get(case, (None, f"no row for {case} in {PH2_SHEET}", None))
        scan.records.append(Record(stem=case, image_path=image_path, mask_path=mask_path,
                                   width=size[0], height=size[1], lesion_id=case, raw_label=raw,
                                   diagnosis=schemes.normalise_raw("ph2", raw), label_note=note))
    if labels:
        present = set(cases)
        for name in sorted(set(labels) - present):
            scan.skip(sheet, f"row {labels[name][2]} for image {name} but no folder "
                             f"'{PH2_IMAGES_DIR}/{name}'")
    return scan


# --------------------------------------------------------------------------- folder

def scan_folder(root):
    """Scan images/ + masks/ (<stem>.png or <stem>_segmentation.png) + optional labels.csv.

    labels.csv columns: image (file name or stem), label (any diagnosis name
    in schemes.FOLDER_ALIASES), optional lesion_id (to keep several images of
    one lesion in one subset).
    """
    scan = Scan("folder", root)
    masks = index_files(os.path.join(root, "masks"))
    images = list_images(os.path.join(root, "images"))
    labels = {}
    labels_path = os.path.join(root, "labels.csv")
    if os.path.isfile(labels_path):
        try:
            rows = read_csv_rows(labels_path)
            header = [h.lower() for h in rows[0]] if rows else []
            col_image = next(header.index(c) for c in ("image", "image_id", "file") if c in header)
            col_label = next(header.index(c) for c in ("label", "diagnosis", "dx") if c in header)
        except (OSError, UnicodeDecodeError, csv.Error, StopIteration) as err:
            scan.skip(labels_path, f"expected a header with columns image,label ({err or 'missing'}); "
                                   f"images keep no label")
        else:
            col_lesion = header.index("lesion_id") if "lesion_id" in header else None
            scan.label_files.append(labels_path)
            for row_no, row in enumerate(rows[1:], start=2):
                if len(row) <= max(col_image, col_label):
                    scan.skip(labels_path, f"row {row_no}: too few columns")
                    continue
                lesion = row[col_lesion] if col_lesion is not None and col_lesion < len(row) else None
                labels[stem_of(row[col_image])] = (row[col_label] or None, lesion or None, row_no)
    present = {}
    for image_path in images:
        stem = stem_of(image_path)
        if stem in present:
            scan.skip(image_path, f"duplicate image name {stem} (also {present[stem]})")
            continue
        present[stem] = image_path
    for stem in sorted(set(labels) - set(present)):
        scan.skip(labels_path, f"row {labels[stem][2]} for image {stem} but no such image in images/")
    for stem, image_path in sorted(present.items()):
        mask_path = None
        for candidate in (f"{stem}_segmentation", stem):
            mask_path = next((masks[f"{candidate}{ext}".lower()] for ext in IMAGE_EXTENSIONS
                              if f"{candidate}{ext}".lower() in masks), None)
            if mask_path:
                break
        size = check_pair(scan, image_path, mask_path, f"masks/{stem}.png or masks/{stem}_segmentation.png")
        if size is None:
            continue
        raw, lesion_id, _ = labels.get(stem, (None, None, None))
        diagnosis = schemes.normalise_raw("folder", raw)
        note = None
        if raw is None and labels_path in scan.label_files:
            note = "no row in labels.csv"
        elif raw is not None and diagnosis is None:
            note = (f"label {raw!r} in labels.csv is not a known diagnosis "
                    f"(use e.g. {', '.join(schemes.DIAGNOSES[:5])}, ...)")
        scan.records.append(Record(stem=stem, image_path=image_path, mask_path=mask_path,
                                   width=size[0], height=size[1], lesion_id=lesion_id or stem,
                                   raw_label=raw, diagnosis=diagnosis, label_note=note))
    scan.vocabulary = frozenset(r.diagnosis for r in scan.records if r.diagnosis)
    return scan


def scan_layout(layout, root, subsets=("train", "val", "test")):
    """Run the scanner for ``layout`` at ``root``; ``subsets`` matters only for ISIC layouts."""
    if layout in ISIC_SPLITS:
        return scan_isic(layout, root, subsets)
    if layout == "ham10000":
        return scan_ham10000(root)
    if layout == "ph2":
        return scan_ph2(root)
    if layout == "folder":
        return scan_folder(root)
    raise DatasetError(f"layout={layout!r}: unknown layout; choose one of {', '.join(EXPECTED)}")
