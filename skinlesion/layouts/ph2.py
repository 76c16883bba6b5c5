"""PH2: one folder per case (IMDxxx) with the dermoscopic image and the lesion mask; PH2_dataset.xlsx.

The sheet gives each image its clinical diagnosis (columns C-E) and its
dermoscopic criteria (columns F-Q, read into ``Record.criteria``):
asymmetry 0/1/2, pigment network AT/T, dots/globules A/AT/T, streaks,
regression areas and blue-whitish veil A/P, and six colour columns marked X.
"""
import os
import re

from skinlesion import schemes
from skinlesion.layouts.base import Scan
from skinlesion.layouts.criteria_cells import read_criteria
from skinlesion.layouts.files import check_pair, find_image_file, index_files, skip_rows_without_image
from skinlesion.layouts.registry import Layout, register

PH2_IMAGES_DIR = "PH2 Dataset images"
PH2_SHEET = "PH2_dataset.xlsx"
PH2_DIAGNOSIS_COLUMNS = ("Common Nevus", "Atypical Nevus", "Melanoma")
# Header cell (whitespace collapsed, lower case, legend in brackets dropped) -> criterion.
PH2_CRITERIA_COLUMNS = {"asymmetry": "asymmetry", "pigment network": "pigment_network",
                        "dots/globules": "dots_globules", "streaks": "streaks",
                        "regression areas": "regression_areas", "blue-whitish veil": "blue_whitish_veil"}
# Colour header cell -> colour (skinlesion.criteria.COLOURS).
PH2_COLOUR_COLUMNS = {"white": "white", "red": "red", "light-brown": "light_brown", "dark-brown": "dark_brown",
                      "blue-gray": "blue_gray", "blue-grey": "blue_gray", "black": "black"}


def _criteria_columns(header):
    """({criterion: column index}, {colour: column index}) found in PH2's header row (normalised cells)."""
    found, colours = {}, {}
    for index, cell in enumerate(header):
        base = re.sub(r"\s*\(.*\)$", "", cell)
        if base in PH2_CRITERIA_COLUMNS:
            found.setdefault(PH2_CRITERIA_COLUMNS[base], index)
        elif cell in PH2_COLOUR_COLUMNS:
            colours.setdefault(PH2_COLOUR_COLUMNS[cell], index)
    return found, colours


def _row_criteria(scan, sheet_path, header_cells, columns, name, row, row_no):
    """The typed criteria of one PH2 sheet row (bad cells dropped, one line each); None without criteria columns."""
    from openpyxl.utils import get_column_letter

    def cell_of(index):
        """(column title, cell) of column ``index`` in this row; the cell is None past the row's end."""
        title = f"{get_column_letter(index + 1)} ({header_cells[index]})"
        return title, row[index] if index < len(row) else None

    criteria_columns, colour_columns = columns
    if not criteria_columns and not colour_columns:
        return None
    cells = [(criterion, *cell_of(index)) for criterion, index in criteria_columns.items()]
    colours = [(colour, *cell_of(index)) for colour, index in colour_columns.items()] or None
    return read_criteria(scan, sheet_path, f"row {row_no}", name, cells, colours)


def _ph2_labels(sheet_path, scan):
    """Read PH2_dataset.xlsx: {image name: (raw_label or None, note, row number, criteria dict)}.

    The header row (normally row 13) is found by its "Image Name" cell; the
    clinical diagnosis is whichever of Common Nevus / Atypical Nevus /
    Melanoma holds an "X". The criteria come from the columns named in
    PH2_CRITERIA_COLUMNS and PH2_COLOUR_COLUMNS, wherever they are.
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
    header_cells = [" ".join(str(c).split()) if c is not None else "" for c in rows[header_at]]
    columns = _criteria_columns(header)
    labels = {}
    for offset, row in enumerate(rows[header_at + 1:], start=header_at + 2):
        if name_col >= len(row) or row[name_col] is None or not str(row[name_col]).strip():
            continue
        name = str(row[name_col]).strip()
        marked = [c for c, col in diag_cols.items() if col < len(row) and norm(row[col]) == "x"]
        criteria = _row_criteria(scan, sheet_path, header_cells, columns, name, row, offset)
        if len(marked) == 1:
            labels[name] = (marked[0], None, offset, criteria)
        else:
            labels[name] = (None, f"{os.path.basename(sheet_path)} row {offset}: "
                                  f"{'no' if not marked else 'several'} clinical diagnosis marked", offset,
                            criteria)
    return labels


def scan_ph2(root, subsets=None):
    """Scan the PH2 tree: IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.* and IMDxxx_lesion/IMDxxx_lesion.*

    subsets: ignored (PH2 has no official splits).
    """
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
        image_path = find_image_file(index_files(os.path.join(case_dir, f"{case}_Dermoscopic_Image")), case)
        mask_path = find_image_file(index_files(os.path.join(case_dir, f"{case}_lesion")), f"{case}_lesion")
        if image_path is None:
            scan.skip(case_dir, f"no image (expected {case}_Dermoscopic_Image/{case}.bmp, .jpg or .png)")
            continue
        size = check_pair(scan, image_path, mask_path, f"{case}_lesion/{case}_lesion.bmp or .png")
        if size is None:
            continue
        raw, note, criteria = None, None, None
        if labels is not None:
            raw, note, _, criteria = labels.get(case, (None, f"no row for {case} in {PH2_SHEET}", None, None))
        scan.add(case, image_path, mask_path, size, raw_label=raw,
                 diagnosis=schemes.normalise_raw("ph2", raw), label_note=note, criteria=criteria)
    if labels:
        skip_rows_without_image(scan, sheet, {name: row[2] for name, row in labels.items()}, cases,
                                lambda name: f"no folder '{PH2_IMAGES_DIR}/{name}'")
    return scan


register(Layout(name="ph2",
                expected="'PH2 Dataset images'/IMDxxx/IMDxxx_Dermoscopic_Image/ + IMDxxx_lesion/ "
                         "(+ PH2_dataset.xlsx)",
                detect=lambda directory, names: PH2_IMAGES_DIR in names,
                scan=scan_ph2))
