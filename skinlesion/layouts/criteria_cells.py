"""Dermoscopic criteria cells of a label sheet (PH2_dataset.xlsx, labels.csv) read into a criteria dict.

A criteria dict is ``{criterion name: typed value}`` (skinlesion.criteria);
a criterion whose cell is empty is unknown and absent from the dict. A bad
cell drops that one criterion for that one image with one warning line
naming the file, the row and the column (``Scan.warn``); the image and its
other criteria are kept.
"""
from skinlesion import criteria as crit

# Colour-column cells: a mark ("X" in PH2, X / 1 / yes in labels.csv) or nothing.
_MARKED = {"x", "1", "1.0", "yes", "y", "true", "p", "present"}
_UNMARKED = {"", "0", "0.0", "no", "n", "false", "a", "absent"}


def colour_marked(cell):
    """Whether a colour column's cell marks the colour: True (X, 1, yes), False (empty, 0, no).

    Raises CriteriaError naming the accepted marks for anything else.
    """
    text = " ".join(str(cell).split()).lower() if cell is not None else ""
    if text in _MARKED:
        return True
    if text in _UNMARKED:
        return False
    raise crit.CriteriaError(f"{cell!r} is not a colour mark (X, 1 or yes; empty, 0 or no)")


def read_criteria(scan, file, where, image, cells, colour_cells=None):
    """The typed criteria of one label-sheet row, bad cells dropped with one line each.

    scan: the Scan that records the warnings. file: the label sheet's path.
    where: the row for messages, e.g. "row 14". image: the image name.
    cells: [(criterion name, column title, cell)] for the criteria columns.
    colour_cells: [(colour, column title, cell)] when the sheet has colour
      columns, else None. They build the "colours" set (an empty frozenset
      when no colour is marked, since the columns exist) unless a "colours"
      cell among ``cells`` already gave it. One bad colour cell leaves the
      colours unknown.
    Returns {criterion: value} with the known criteria only.
    """
    found = {}
    for name, title, cell in cells:
        try:
            value = crit.parse_value(name, cell)
        except crit.CriteriaError as err:
            scan.warn(file, f"{where} column {title}: {err}; {name} left unknown for {image}")
            continue
        if value is not None:
            found[name] = value
    if colour_cells and "colours" not in found:
        marked = set()
        for colour, title, cell in colour_cells:
            try:
                if colour_marked(cell):
                    marked.add(colour)
            except crit.CriteriaError as err:
                scan.warn(file, f"{where} column {title}: {err}; colours left unknown for {image}")
                return found
        found["colours"] = frozenset(marked)
    return found
