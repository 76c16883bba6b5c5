"""The layout registry: what each layout is called, how it is recognised and how it is scanned.

Each layout module ends with one ``register(Layout(...))``; detection and
scanning go through the registered entries in registration order, which is
the order of the imports in ``skinlesion/layouts/__init__.py``.
"""
import os
from dataclasses import dataclass
from typing import Callable

from skinlesion.layouts.base import DatasetError, log


@dataclass(frozen=True)
class Layout:
    """One dataset layout.

    name: the layout's name (``LesionDataset.load(layout=...)``, summaries).
    expected: what it looks like on disk, for error messages.
    detect(directory, names) -> bool: whether ``directory``, whose entry
      names are ``names`` (a set, listed once for all layouts), is this layout.
    scan(root, subsets) -> Scan: read the dataset at ``root``; ``subsets``
      ("train"/"val"/"test") matters only to layouts with official splits.
    has_masks, has_labels, has_groups: whether its files can give lesion
      masks, diagnoses, and lesion / patient ids that group several images.
    """
    name: str
    expected: str
    detect: Callable
    scan: Callable
    has_masks: bool = True
    has_labels: bool = True
    has_groups: bool = False


_LAYOUTS = {}  # name -> Layout, in registration (= detection) order


def register(layout):
    """Add ``layout`` to the registry after those already there; return it."""
    if layout.name in _LAYOUTS:
        raise ValueError(f"layout {layout.name!r} is registered already; give the new layout another name")
    _LAYOUTS[layout.name] = layout
    return layout


def unregister(name):
    """Remove the layout called ``name`` from the registry (KeyError if absent)."""
    del _LAYOUTS[name]


def registered():
    """The registered layouts, in detection order (a tuple of Layout)."""
    return tuple(_LAYOUTS.values())


def _unknown(layout):
    """The DatasetError for a layout name that is not registered."""
    return DatasetError(f"layout={layout!r}: unknown layout; choose one of {', '.join(_LAYOUTS)}")


def _detect_here(directory):
    """Layout names whose markers are directly in ``directory``, in detection order."""
    try:
        names = set(os.listdir(directory))
    except OSError:
        return []
    return [layout.name for layout in registered() if layout.detect(directory, names)]


def detect_layouts(path):
    """All (layout, root) pairs found at ``path`` or in its direct sub-folders.

    Those at ``path`` itself come first; within one level, detection order.
    """
    path = os.path.abspath(path)
    order = list(_LAYOUTS)
    found = [(layout, path) for layout in _detect_here(path)]
    children = sorted(os.path.join(path, n) for n in os.listdir(path)
                      if os.path.isdir(os.path.join(path, n)))
    below = [(layout, child) for child in children for layout in _detect_here(child)]
    below.sort(key=lambda pair: (order.index(pair[0]), pair[1]))
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
    if layout is not None and layout not in _LAYOUTS:
        raise _unknown(layout)
    candidates = detect_layouts(path)
    if layout is not None:
        candidates = [c for c in candidates if c[0] == layout]
    if not candidates:
        wanted = [_LAYOUTS[layout]] if layout else registered()
        listing = "; ".join(f"{entry.name}: {entry.expected}" for entry in wanted)
        raise DatasetError(f"{path}: no dermoscopy dataset found here or in its sub-folders. "
                           f"Expected one of these layouts: {listing}")
    if len(candidates) > 1:
        others = ", ".join(f"{name} at {root}" for name, root in candidates[1:])
        log.warning("%s holds several datasets; reading %s at %s (also found: %s). Pass that "
                    "dataset's own folder or layout=... to choose.", path, candidates[0][0],
                    candidates[0][1], others)
    return candidates[0]


def scan_layout(layout, root, subsets=("train", "val", "test")):
    """Run the scanner for ``layout`` at ``root``; ``subsets`` matters only to official-split layouts."""
    if layout not in _LAYOUTS:
        raise _unknown(layout)
    return _LAYOUTS[layout].scan(root, subsets)
