"""The layout registry: what each layout is called, how it is recognised and how it is scanned.

Each layout module ends with one ``register(Layout(...))``; detection and
scanning go through the registered entries in registration order, which is
the order of the imports in ``skinlesion/layouts/__init__.py``.

Detection serves a purpose. ``"segmentation"`` (the default, what
LesionDataset reads) considers only layouts with masks, so a label-only
layout never takes a folder from a segmentation reader. ``"classification"``
(skinlesion.labelled) considers every layout with labels; in a folder where
a label-only layout is found, the mask layouts found in that same folder are
set aside (the label-only layout is that folder's classification dataset:
e.g. ISIC 2018 Task 3 beside Task 1, or an ISIC 2017 tree without its masks).

A layout may defer to others (``Layout.defers_to``): where one of those is
detected in the same folder, detection sets it aside unless it is asked for
by name (``layout=...``). ISIC 2018 Task 2 reads the same input folder as
Task 1, so the Task 1 reader keeps that folder and Task 2 is read when asked for.
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
    group_key: what the group ids are ("lesion_id", "patient_id"), when
      has_groups; records carry them in ``Record.lesion_id``.
    defers_to: names of layouts that, detected in the same folder, set this
      one aside unless it is asked for by name.
    """
    name: str
    expected: str
    detect: Callable
    scan: Callable
    has_masks: bool = True
    has_labels: bool = True
    has_groups: bool = False
    group_key: str = None
    defers_to: tuple = ()


PURPOSES = ("segmentation", "classification")

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


def registered(purpose="segmentation"):
    """The registered layouts serving ``purpose``, in detection order (a tuple of Layout).

    purpose: "segmentation" (layouts with masks) or "classification"
    (layouts with labels, label-only ones included).
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose={purpose!r}: choose one of {', '.join(PURPOSES)}")
    wanted = "has_masks" if purpose == "segmentation" else "has_labels"
    return tuple(layout for layout in _LAYOUTS.values() if getattr(layout, wanted))


def get_layout(name):
    """The registered Layout called ``name`` (DatasetError listing the names if there is none)."""
    if name not in _LAYOUTS:
        raise _unknown(name)
    return _LAYOUTS[name]


def _unknown(layout, purpose=None):
    """The DatasetError for a layout name that is not registered (listing those serving ``purpose``)."""
    names = [entry.name for entry in registered(purpose)] if purpose else list(_LAYOUTS)
    return DatasetError(f"layout={layout!r}: unknown layout; choose one of {', '.join(names)}")


def _detect_here(directory, purpose, named=None):
    """Layout names serving ``purpose`` whose markers are directly in ``directory``, in detection order.

    named: a layout asked for by name, kept even where it defers to another.
    """
    try:
        names = set(os.listdir(directory))
    except OSError:
        return []
    found = [layout for layout in registered(purpose) if layout.detect(directory, names)]
    if any(not layout.has_masks for layout in found):
        found = [layout for layout in found if not layout.has_masks]
    present = {layout.name for layout in found}
    found = [layout for layout in found if layout.name == named or not present & set(layout.defers_to)]
    return [layout.name for layout in found]


def detect_layouts(path, purpose="segmentation", named=None):
    """All (layout, root) pairs serving ``purpose`` found at ``path`` or in its direct sub-folders.

    Those at ``path`` itself come first; within one level, detection order.
    For "classification", a folder where a label-only layout is found gives
    only its label-only layouts. A layout that defers to one found in the
    same folder (Layout.defers_to) is left out unless it is ``named``.
    """
    path = os.path.abspath(path)
    order = list(_LAYOUTS)
    found = [(layout, path) for layout in _detect_here(path, purpose, named)]
    children = sorted(os.path.join(path, n) for n in os.listdir(path)
                      if os.path.isdir(os.path.join(path, n)))
    below = [(layout, child) for child in children for layout in _detect_here(child, purpose, named)]
    below.sort(key=lambda pair: (order.index(pair[0]), pair[1]))
    return found + below


def resolve_layout(path, layout=None, purpose="segmentation"):
    """Pick the (layout, root) to read at ``path`` for ``purpose``; raise DatasetError when there is none.

    layout: optional layout name to insist on (when a parent folder holds
    several datasets). Several candidates without it: the first wins and a
    warning names the others. A label-only layout asked for segmentation
    raises DatasetError saying where it can be read.
    """
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: dataset folder does not exist (pass a dataset root, "
                           f"or no path for the built-in synthetic set)")
    if layout is not None and layout not in _LAYOUTS:
        raise _unknown(layout, purpose)
    serving = registered(purpose)
    if layout is not None and _LAYOUTS[layout] not in serving:
        names = ", ".join(entry.name for entry in serving)
        if purpose == "segmentation":
            raise DatasetError(f"layout={layout!r} has no lesion masks, so it cannot be read for segmentation; "
                               f"load it for classification (skinlesion.labelled.load_labelled), "
                               f"or choose one of {names}")
        raise DatasetError(f"layout={layout!r} has no labels, so it cannot be read for {purpose}; "
                           f"choose one of {names}")
    candidates = detect_layouts(path, purpose, named=layout)
    if layout is not None:
        candidates = [c for c in candidates if c[0] == layout]
    if not candidates:
        wanted = [_LAYOUTS[layout]] if layout else serving
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
