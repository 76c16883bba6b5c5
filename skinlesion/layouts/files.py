"""File helpers shared by the layout scanners: listing, stems, headers, masks, label CSVs.

Besides the plain file utilities, this holds the checks every layout makes
the same way, so their skip messages stay the same across layouts: one
image per stem (``unique_stems``), a label row must have its image
(``skip_rows_without_image``), an image needs a readable mask of its size
(``check_pair``) or, in a label-only reading, a readable header
(``check_image``, ``sized_pair``), a mask may have any image extension
(``find_image_file``).
"""
import csv
import os

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")


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


def find_image_file(files, *bases, extensions=IMAGE_EXTENSIONS):
    """Path of the first ``<base><ext>`` present in ``files``, or None.

    files: an ``index_files`` result. Bases are tried in order, each with
    every extension in order, case-insensitively.
    """
    for base in bases:
        for ext in extensions:
            path = files.get(f"{base}{ext}".lower())
            if path is not None:
                return path
    return None


def unwrap_dir(path):
    """``path``, or ``path/<same name>`` when an unzip nested the folder in itself."""
    inner = os.path.join(path, os.path.basename(path))
    return inner if os.path.isdir(inner) else path


def stem_of(name):
    """File name without directory and image extension ('ISIC_1.jpg' -> 'ISIC_1')."""
    base = os.path.basename(str(name).strip())
    stem, ext = os.path.splitext(base)
    return stem if ext.lower() in IMAGE_EXTENSIONS else base


def unique_stems(scan, image_paths, seen=None, name_first=True):
    """Yield (stem, path) for each image whose stem is new; skip the repeats with a reason.

    seen: {stem: first path}, shared across calls when one stem must be
    unique over several folders (ISIC over its splits); a fresh dict if None.
    name_first: whether the skip reason names the image that kept the stem.
    """
    seen = {} if seen is None else seen
    for path in image_paths:
        stem = stem_of(path)
        if stem in seen:
            also = f" (also {seen[stem]})" if name_first else ""
            scan.skip(path, f"duplicate image name {stem}{also}")
            continue
        seen[stem] = path
        yield stem, path


def skip_rows_without_image(scan, label_path, row_numbers, present, missing):
    """Skip, one line each and by stem, the label rows whose image is not in ``present``.

    row_numbers: {stem: row number in label_path, or None when not told}.
    missing: function of the stem giving the end of the reason, e.g.
    ``lambda stem: "no such image in images/"``.
    """
    for stem in sorted(set(row_numbers) - set(present)):
        row = "row" if row_numbers[stem] is None else f"row {row_numbers[stem]}"
        scan.skip(label_path, f"{row} for image {stem} but {missing(stem)}")


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


def check_image(scan, image_path):
    """Read the image header; return (width, height) or None after recording why the image is skipped."""
    try:
        return image_size(image_path)
    except ValueError as err:
        scan.skip(image_path, f"image {err}")
        return None


def sized_pair(scan, image_path, mask_path, expected_mask, with_masks=True):
    """(mask path, (width, height)) of a usable record, or (None, None) after recording the skip.

    with_masks: True for a segmentation reading (``check_pair``: the mask must be
    there and match); False for a label-only reading, which checks the image
    header only and gives mask path None (whatever mask files there are).
    """
    if not with_masks:
        return None, check_image(scan, image_path)
    size = check_pair(scan, image_path, mask_path, expected_mask)
    return (mask_path, size) if size is not None else (None, None)


def read_csv_columns(scan, path, required, optional=()):
    """The named columns of a header-row CSV file: a list of (row number, (value, ...)).

    Rows are streamed and only these columns kept, so large metadata files
    (ISIC 2024: 401059 rows of 55 columns) stay small in memory. Names match
    the header case-insensitively; values are stripped, in the order
    ``required + optional``; an absent optional column reads as None. A row
    too short for the required columns is skipped with a reason (row numbers
    are file lines); blank rows are ignored. Raises ValueError naming the
    file and the missing columns, and OSError / UnicodeDecodeError /
    csv.Error when the file cannot be read.
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [cell.strip().lower() for cell in next(reader, [])]
        missing = [name for name in required if name.lower() not in header]
        if missing:
            raise ValueError(f"{os.path.basename(path)} lacks column(s) {', '.join(missing)} "
                             f"(header: {', '.join(header) or 'empty'})")
        positions = [header.index(name.lower()) for name in required]
        extra = [header.index(name.lower()) if name.lower() in header else None for name in optional]
        rows = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(positions):
                scan.skip(path, f"row {reader.line_num}: too few columns")
                continue
            values = [row[p].strip() for p in positions]
            values += [row[p].strip() if p is not None and p < len(row) else None for p in extra]
            rows.append((reader.line_num, tuple(values)))
    return rows


def read_csv_rows(path):
    """All rows of a CSV file as lists of stripped strings (BOM tolerated)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return [[cell.strip() for cell in row] for row in csv.reader(handle) if any(c.strip() for c in row)]


def read_csv_table(path):
    """(lower-cased header, data rows) of a CSV file whose first row is a header.

    Raises what ``read_csv_rows`` raises (OSError, UnicodeDecodeError, csv.Error).
    """
    rows = read_csv_rows(path)
    header = [h.lower() for h in rows[0]] if rows else []
    return header, rows[1:]


def rows_with_columns(scan, path, rows, columns):
    """Yield (row number, row) for the data rows long enough for every index in ``columns``.

    Row numbers count the header as row 1; a shorter row is skipped with a reason.
    """
    for row_no, row in enumerate(rows, start=2):
        if len(row) <= max(columns):
            scan.skip(path, f"row {row_no}: too few columns")
            continue
        yield row_no, row


def find_label_file(root, name):
    """``root/name``, or ``root/<name without .csv>/name`` (how ISIC zips unpack); None if absent."""
    for candidate in (os.path.join(root, name),
                      os.path.join(root, os.path.splitext(name)[0], name)):
        if os.path.isfile(candidate):
            return candidate
    return None


def missing_row_note(raw_label, note, label_names):
    """A record's label note: ``note``, or "no row in <label_names>" when label files exist but say nothing.

    label_names: the label files read for this image, "" when there are none.
    """
    if raw_label is None and note is None and label_names:
        return f"no row in {label_names}"
    return note
