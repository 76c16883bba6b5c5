"""Labelled images for the second-stage classifier, from every layout with labels, masks or not.

    items, summary = load_labelled("/data/ISIC2019", "train", classes="isic2019")
    image = read_image(items[0])          # RGB uint8 [H, W, 3]
    items[0].class_index, items[0].group  # 0-based class in the scheme, lesion / patient id

``load_labelled`` detects the layout for classification (skinlesion.layouts,
purpose "classification": the label-only layouts ISIC 2017 Part 3, the ISIC
2017 melanoma-column copy, ISIC 2018 Task 3, ISIC 2019, ISIC 2020, ISIC 2024,
HAM10000 and folder without masks, and the segmentation layouts, whose masks
are ignored), splits it (official folders where the layout has them,
otherwise seeded and grouped by lesion / patient id, skinlesion.splits) and
maps diagnoses to a class scheme (skinlesion.schemes, ``CLASSIFIER_SCHEMES``
included). It never builds a LesionDataset: nothing here reads a mask.

Bad input is skipped with one line and counted, as elsewhere: images whose
header cannot be read and images without a class in the scheme at load
time (``summary["skipped"]``), images that fail to decode at read time
(``read_image_or_skip``).
"""
import io
import logging
import re
from dataclasses import dataclass, field

import numpy as np

from mrcnn.dataset import read_image_rgb
from skinlesion import layouts, schemes, splits
from skinlesion.layouts import DatasetError

log = logging.getLogger(__name__)

SUBSET_NAMES = ("train", "val", "test", "all")
HDF5_EXTENSIONS = (".hdf5", ".h5")


@dataclass(frozen=True)
class LabelledItem:
    """One labelled image.

    image_id: the image's stem (ISIC_0000000, IMD002, an ISIC 2024 isic_id).
    path: the image file, or the HDF5 file that holds it.
    key: the image's dataset key inside ``path`` when that is an HDF5 file, else None.
    class_index: 0-based position of ``label`` in ``schemes.class_names(scheme)``.
    label: class name in the scheme. group: lesion / patient id (the image id when none).
    subset: "train", "val" or "test". layout: the layout it was read from.
    diagnosis: canonical diagnosis (schemes.DIAGNOSES); raw_label: as in the label file.
    mask_path: the ground-truth mask file where the layout has one, else None.
    width, height: from the header at load time; None for images inside an HDF5 file.
    criteria: the image's dermoscopic criteria {name: typed value} (skinlesion.criteria)
      where the layout records them (PH2's sheet, labels.csv columns), else None;
      unknown criteria are absent. Left out of the hash, so items stay hashable.
    """
    image_id: str
    path: str
    key: str
    class_index: int
    label: str
    group: str
    subset: str
    layout: str
    diagnosis: str
    raw_label: str
    mask_path: str = None
    width: int = None
    height: int = None
    criteria: dict = field(default=None, hash=False)


def _check_arguments(subset, classes, seed, split):
    """Validate load_labelled's arguments; return the split fractions as a tuple."""
    if subset not in SUBSET_NAMES:
        raise DatasetError(f"subset={subset!r}: choose one of {', '.join(SUBSET_NAMES)}")
    schemes.check_scheme_name(classes, "classification")
    if len(schemes.class_names(classes)) < 2:
        raise schemes.SchemeError(f"classes={classes!r} has one class; a classifier needs two or more, e.g. "
                                  f"classes='melanoma', 'isic2017', 'isic2019' or 'ph2'")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"seed={seed!r}: must be an int >= 0")
    return splits.validate_fractions(splits.parse_split(split, "split="))


def _assign_subsets(scan, fractions, seed):
    """Set every record's split; return True when it is the layout's official one.

    Official folders are kept where the tree has a training folder and a val
    or test one; with Training + Test only, val is carved out of training
    (a val / (train + val) share). Otherwise (no official split, or only the
    training folder present) the split is seeded, grouped by lesion / patient
    id and stratified by diagnosis, over all records, so it does not depend
    on the scheme or the subset asked for.
    """
    records = scan.records
    groups = [r.lesion_id for r in records]
    strata = [r.diagnosis for r in records]
    present = {r.split for r in records}
    if scan.official_splits and "train" in present and present & {"val", "test"}:
        if isinstance(fractions, splits.FoldSplit):
            log.warning("%s: the official split folders are used; split=%s (cross-validation) applies only "
                        "where there are none", scan.root, fractions)
        if "val" not in present:
            in_train = [i for i, r in enumerate(records) if r.split == "train"]
            share = fractions[1] / (fractions[0] + fractions[1])
            _, val = splits.carve_validation([groups[i] for i in in_train], [strata[i] for i in in_train],
                                             share, seed)
            for position in val:
                records[in_train[position]].split = "val"
        return True
    if scan.official_splits:
        log.info("%s: only the official training folder is here; splitting it seeded (split=%s, seed=%d)",
                 scan.root, tuple(fractions), seed)
    for record, name in zip(records, splits.assign_split(groups, strata, fractions, seed)):
        record.split = name
    return False


def _skip_reason(record, scheme):
    """Why ``record`` has no class in ``scheme``."""
    if record.diagnosis is not None:
        return f"diagnosis {record.diagnosis!r} has no class in scheme {scheme!r}"
    return record.label_note or "no diagnosis label"


def _item(record, layout_name, scheme, label):
    """The LabelledItem of a scanned record with class name ``label``."""
    in_hdf5 = str(record.image_path).lower().endswith(HDF5_EXTENSIONS)
    return LabelledItem(image_id=record.stem, path=record.image_path, key=record.stem if in_hdf5 else None,
                        class_index=schemes.class_names(scheme).index(label), label=label,
                        group=record.lesion_id, subset=record.split, layout=layout_name,
                        diagnosis=record.diagnosis, raw_label=record.raw_label, mask_path=record.mask_path,
                        width=record.width, height=record.height, criteria=record.criteria)


def load_labelled(path, subset="train", classes="melanoma", seed=0, split=(0.8, 0.1, 0.1), layout=None):
    """The labelled images of one subset of a dataset: (list of LabelledItem, summary dict).

    path: dataset root or its parent folder (any layout with labels).
    subset: "train", "val", "test" or "all".
    classes: scheme name in schemes.ALL_SCHEMES with two or more classes.
    seed: int >= 0 for the seeded split. split: (train, val, test) fractions
        where the layout has no official split (see _assign_subsets).
    layout: force one layout (a name in layouts.registered("classification")).

    Items are in stem order. Returns summary {"layout", "root", "subset",
    "scheme", "class_names": [...], "images": N, "classes": {name: n},
    "subsets": {subset: n} (labelled images per subset), "skipped": [{"file",
    "reason"}], "seed", "split", "official_split": bool, "grouped_by":
    "lesion_id" / "patient_id" / "image", "groups": distinct groups in the items}.
    Raises DatasetError when nothing usable is found and SchemeError (a
    ValueError) when the labels cannot supply ``classes``.
    """
    fractions = _check_arguments(subset, classes, seed, split)
    layout_name, root = layouts.resolve_layout(str(path), layout, purpose="classification")
    entry = layouts.get_layout(layout_name)
    scan = layouts.scan_layout(layout_name, root, splits.SUBSETS)
    if not scan.records:
        reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in scan.skipped[:3])
        raise DatasetError(f"{root}: found a {layout_name} layout but no usable image; {len(scan.skipped)} "
                           f"files skipped{': ' + reasons if reasons else ''}. Expected {entry.expected}")
    schemes.require_scheme(classes, scan.vocabulary, f"the {layout_name} dataset at {root}",
                           scan.observed_labels(), purpose="classification")
    official = _assign_subsets(scan, fractions, int(seed))

    items, skipped, per_subset = [], list(scan.skipped), dict.fromkeys(splits.SUBSETS, 0)
    for record in sorted(scan.records, key=lambda r: r.stem):
        label = schemes.to_class(record.diagnosis, classes)
        if label is not None:
            per_subset[record.split] += 1
        if subset != "all" and record.split != subset:
            continue
        if label is None:
            reason = f"{_skip_reason(record, classes)} (classes={classes!r} needs a label)"
            log.warning("Skipping %s: %s", record.image_path, reason)
            skipped.append({"file": record.image_path, "reason": reason})
            continue
        items.append(_item(record, layout_name, classes, label))
    if not items:
        raise DatasetError(f"{root}: the {layout_name} dataset has {len(scan.records)} usable images but none "
                           f"of subset {subset!r} with a class in classes={classes!r} ({len(skipped)} skipped; "
                           f"labelled per subset: {per_subset}); use another subset, scheme or split")

    names = schemes.class_names(classes)
    counts = dict.fromkeys(names, 0)
    for item in items:
        counts[item.label] += 1
    grouped = entry.group_key if entry.has_groups and any(r.lesion_id != r.stem for r in scan.records) else "image"
    summary = {"layout": layout_name, "root": root, "subset": subset, "scheme": classes,
               "class_names": list(names), "images": len(items), "classes": counts, "subsets": per_subset,
               "skipped": skipped, "seed": int(seed), "split": splits.describe_fractions(fractions), "official_split": official,
               "grouped_by": grouped, "groups": len({item.group for item in items})}
    log.info("Loaded %d labelled %s images (%s, classes=%s) from %s; %d skipped; per class %s", len(items),
             subset, layout_name, classes, root, len(skipped), counts)
    return items, summary


# ---------------------------------------------------------------------- pixels

_OPEN_HDF5 = {}  # path -> open h5py.File, kept so each read does not reopen the file


def close_hdf5_files():
    """Close the HDF5 files read_image opened (call before forking worker processes)."""
    while _OPEN_HDF5:
        _, handle = _OPEN_HDF5.popitem()
        handle.close()


def _hdf5_bytes(path, key):
    """The encoded image stored under ``key`` in the HDF5 file ``path``, as bytes."""
    import h5py
    handle = _OPEN_HDF5.get(path)
    if handle is None:
        handle = _OPEN_HDF5[path] = h5py.File(path, "r")
    value = handle[key][()]
    if isinstance(value, np.ndarray):  # stored as a uint8 array rather than one bytes scalar
        return value.tobytes()
    return value.tobytes() if isinstance(value, np.void) else bytes(value)


def image_reference(item):
    """Where an item's pixels are: the file, or "file[key]" for an image inside an HDF5 file."""
    return item.path if item.key is None else f"{item.path}[{item.key}]"


def read_image(item):
    """The item's image as RGB uint8 [H, W, 3].

    Files are read as every layout reads them (mrcnn.dataset.read_image_rgb);
    an HDF5 entry is decoded from its JPEG (or PNG) bytes. Raises ValueError
    naming the file (and key) when the image cannot be read or decoded.
    """
    if item.key is None:
        return read_image_rgb(item.path)
    try:
        data = _hdf5_bytes(item.path, item.key)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{image_reference(item)}: cannot read the image bytes ({err})") from err
    try:
        return read_image_rgb(io.BytesIO(data))
    except ValueError as err:
        # PIL names the in-memory buffer by its repr; name the stored bytes instead.
        reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the stored bytes", str(err.__cause__ or err))
        raise ValueError(f"{image_reference(item)}: cannot decode image ({reason})") from err


def read_image_or_skip(item, skipped):
    """``read_image(item)``, or None after one warning line and a {"file", "reason"} entry in ``skipped``."""
    try:
        return read_image(item)
    except ValueError as err:
        log.warning("Skipping %s", err)  # the message names the file (and key)
        skipped.append({"file": image_reference(item), "reason": str(err)})
        return None
