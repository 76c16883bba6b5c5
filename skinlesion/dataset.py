"""LesionDataset: one reader for every public dermoscopy layout and the synthetic set.

    dataset = LesionDataset()
    summary = dataset.load("/data/ISIC2017", "train", classes="isic2017")

``load`` detects the layout (skinlesion.layouts), picks the subset (official
split folders where they exist, otherwise a seeded split grouped by lesion and
stratified by diagnosis, skinlesion.splits), maps diagnoses to the requested
class scheme (skinlesion.schemes) and registers one image per usable file.
Unusable files are skipped with one warning each and listed in the summary.

``classes="isic2018_attributes"`` reads the ISIC 2018 Task 2 attribute masks
instead of the lesion mask: one instance per connected component, classed
by attribute (skinlesion.attribute_masks).
"""
import logging
import re

import numpy as np

from mrcnn.dataset import Dataset, read_image_rgb
from skinlesion import attribute_masks, layouts, schemes, splits, synthetic
from skinlesion.layouts import DatasetError

log = logging.getLogger(__name__)

SOURCE = "lesion"
SUBSET_NAMES = ("train", "val", "test", "all")
# Synthetic images per subset when no count is given; seeds differ per subset
# (SUBSET_CODES), so val and test images are never training images.
SYNTHETIC_COUNTS = {"train": 300, "val": 50, "test": 50}
SUBSET_CODES = {"train": 0, "val": 1, "test": 2}


def apportion(total, fractions):
    """Split an integer ``total`` into len(fractions) integer counts (largest remainder)."""
    exact = np.asarray(fractions, np.float64) * total
    counts = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[index] += 1
    return [int(c) for c in counts]


def parse_synthetic_path(path):
    """None / "synthetic" / "synthetic:N" -> (True, N or None); any other path -> (False, None)."""
    if path is None:
        return True, None
    text = str(path)
    if text == "synthetic":
        return True, None
    match = re.fullmatch(r"synthetic:(\d+)", text)
    if match:
        if int(match.group(1)) < 1:
            raise DatasetError(f"path={text!r}: synthetic:N needs N >= 1 images")
        return True, int(match.group(1))
    if text.startswith("synthetic:"):
        raise DatasetError(f"path={text!r}: write synthetic:N with N a positive integer, e.g. synthetic:200")
    return False, None


class LesionDataset(Dataset):
    """Dermoscopy images with one lesion mask each and a class from a scheme.

    After ``load``: ``image_info[i]`` holds ``path``, ``mask_path``, ``stem``,
    ``lesion_id``, ``layout``, ``subset``, ``label`` (class name or None),
    ``class_id``, ``diagnosis`` (canonical), ``width``, ``height``,
    ``criteria`` (the record's dermoscopic criteria dict, or None; files
    only); and ``summary`` holds the dict ``load`` returned. With an
    attribute scheme, ``label`` and ``class_id`` are None and
    ``attribute_masks`` {attribute: path} and ``attributes_present`` [names]
    say what the image holds.
    """

    def __init__(self, class_map=None):
        """An empty dataset; call load() to fill it."""
        super().__init__(class_map)
        self.scheme = None
        self.summary = None
        self._synthetic_cache = (None, None)  # (image_id, (image, mask))

    # ----------------------------------------------------------------- loading

    def load(self, path=None, subset="train", classes="lesion", seed=0, split=(0.8, 0.1, 0.1),
             layout=None, size=(256, 256), count=None):
        """Register the images of one subset of a dataset; return a summary dict.

        path: dataset root or its parent folder; None, "synthetic" or
            "synthetic:N" for the built-in synthetic set.
        subset: "train", "val", "test" or "all".
        classes: class scheme name (skinlesion.schemes.SCHEMES).
        seed: int >= 0 for the seeded split (and the synthetic images).
        split: (train, val, test) fractions for layouts without official splits
            (ISIC 2017/2018 use their folders; ISIC 2016 carves a val share of
            val / (train + val) out of its Training folder).
        layout: force one layout when ``path`` holds several datasets.
        size: (H, W) of synthetic images. count: synthetic images in the subset
            (default SYNTHETIC_COUNTS; "synthetic:N" sets it too).

        Returns {"layout", "subset", "scheme", "images", "classes": {name: n}
        (attribute schemes: images where that attribute is present),
        "skipped": [{"file", "reason"}], "root", "seed", "split",
        "official_split": bool (True where the subset is the challenge's own folder)}.
        Raises DatasetError when nothing usable is found and SchemeError
        (also a ValueError) when the labels cannot supply ``classes``.
        """
        if subset not in SUBSET_NAMES:
            raise DatasetError(f"subset={subset!r}: choose one of {', '.join(SUBSET_NAMES)}")
        schemes.check_scheme_name(classes)
        if self.scheme is not None and classes != self.scheme:
            raise schemes.SchemeError(f"classes={classes!r}: this dataset already holds images of scheme "
                                      f"{self.scheme!r}; use one LesionDataset per scheme")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise DatasetError(f"seed={seed!r}: must be an int >= 0")
        fractions = splits.validate_fractions(splits.parse_split(split, "split="))
        is_synthetic, synthetic_count = parse_synthetic_path(path)
        if is_synthetic:
            if schemes.is_attribute_scheme(classes):
                raise schemes.SchemeError(f"classes={classes!r} needs attribute masks; the synthetic set has "
                                          f"none. Pass an ISIC 2018 Task 2 folder "
                                          f"({layouts.EXPECTED[attribute_masks.ATTRIBUTE_LAYOUTS[classes]]})")
            entries, skipped, layout_name, root = self._synthetic_entries(
                subset, classes, int(seed), fractions, size, count or synthetic_count)
            official = False
        else:
            entries, skipped, layout_name, root, official = self._file_entries(
                str(path), subset, classes, int(seed), fractions, layout)

        self.scheme = classes
        for class_id, name in enumerate(schemes.class_names(classes), start=1):
            self.add_class(SOURCE, class_id, name)
        for entry in entries:
            self.add_image(SOURCE, **entry)
        self.prepare()

        counts = {name: 0 for name in schemes.class_names(classes)}
        for entry in entries:
            for name in entry.get("attributes_present", [entry["label"]]):
                counts[name] += 1
        self.summary = {"layout": layout_name, "subset": subset, "scheme": classes, "images": len(entries),
                        "classes": counts, "skipped": skipped, "root": root, "seed": int(seed),
                        "split": splits.describe_fractions(fractions), "official_split": official}
        log.info("Loaded %d %s images (%s, classes=%s) from %s; %d skipped; per class %s", len(entries),
                 subset, layout_name, classes, root, len(skipped), counts)
        return self.summary

    @staticmethod
    def _training_only(layout_name, root):
        """True when an officially split tree has no usable Validation or Test image."""
        return not layouts.scan_layout(layout_name, root, ("val", "test")).records

    def _file_entries(self, path, subset, scheme, seed, fractions, layout):
        """Scan a dataset on disk; return (image_info entries, skipped, layout, root, official split)."""
        attributes = schemes.is_attribute_scheme(scheme)
        if attributes and layout is None:
            layout = attribute_masks.ATTRIBUTE_LAYOUTS[scheme]
        layout_name, root = layouts.resolve_layout(path, layout)
        wanted = splits.SUBSETS if subset == "all" else (subset,)
        if layout_name == "isic2016" and subset == "val":
            wanted = ("train",)  # val is carved out of the official Training folder
        scan = layouts.scan_layout(layout_name, root, wanted)
        official = layout_name in layouts.ISIC_SPLITS or scan.official_splits
        if official and layout_name != "isic2016" and subset != "all" and self._training_only(layout_name, root):
            # Many downloads hold only the Training folder: every subset then comes from one seeded
            # split of it, so train, val and test never share an image.
            log.info("%s: only the official Training folder is present; subsets are a seeded %s split of it",
                     root, "/".join(f"{f:g}" for f in fractions))
            scan = layouts.scan_layout(layout_name, root, ("train",))
            for record in scan.records:
                record.split = None
            official = False
        if official and isinstance(fractions, splits.FoldSplit):
            log.warning("%s: the %s layout has the challenge's own split folders, which are used; "
                        "split=%s (cross-validation) applies only where there are none", root, layout_name, fractions)
        where = f"the {layout_name} dataset at {root}"
        if not scan.records:
            reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in scan.skipped[:3])
            folders = ""
            if layout_name in layouts.ISIC_DATA_DIR:
                folders = " (official folders for this subset: " + ", ".join(
                    layouts.ISIC_DATA_DIR[layout_name].format(n)
                    for s in wanted for n in layouts.ISIC_SPLITS[layout_name].get(s, ())) + ")"
            raise DatasetError(
                f"{root}: found a {layout_name} layout but no usable image for subset {subset!r}"
                f"{folders}; {len(scan.skipped)} files skipped{': ' + reasons if reasons else ''}. "
                f"Expected {layouts.EXPECTED[layout_name]}")
        schemes.require_scheme(scheme, scan.vocabulary, where, scan.observed_labels())
        if attributes:
            attribute_masks.require_attribute_masks(scheme, scan.records, layout_name, root,
                                                    layouts.EXPECTED[attribute_masks.ATTRIBUTE_LAYOUTS[scheme]])

        records = scan.records
        groups = [r.lesion_id for r in records]
        strata = [r.diagnosis for r in records]
        if official and layout_name == "isic2016":
            in_train = [i for i, r in enumerate(records) if r.split == "train"]
            val_fraction = fractions[1] / (fractions[0] + fractions[1])
            _, val_idx = splits.carve_validation([groups[i] for i in in_train],
                                                 [strata[i] for i in in_train], val_fraction, seed)
            for position in val_idx:
                records[in_train[position]].split = "val"
        elif not official:
            for record, name in zip(records, splits.assign_split(groups, strata, fractions, seed)):
                record.split = name
        chosen = [r for r in records if subset == "all" or r.split == subset]
        if not chosen:
            raise DatasetError(f"{root}: the {layout_name} dataset has {len(records)} usable images but "
                               f"none in subset {subset!r}; use a larger dataset or other split fractions "
                               f"(split={tuple(fractions)})")

        entries, skipped = [], list(scan.skipped)
        for record in chosen:
            label = schemes.to_class(record.diagnosis, scheme)
            reason = self._unusable(record, scheme)
            if reason:
                log.warning("Skipping %s: %s", record.image_path, reason)
                skipped.append({"file": record.image_path, "reason": reason})
                continue
            if label is None and not attributes:
                if record.diagnosis is not None:
                    reason = f"diagnosis {record.diagnosis!r} has no class in scheme {scheme!r}"
                else:
                    reason = record.label_note or "no diagnosis label"
                reason += f" (classes={scheme!r} needs a label; classes='lesion' does not)"
                log.warning("Skipping %s: %s", record.image_path, reason)
                skipped.append({"file": record.image_path, "reason": reason})
                continue
            entry = {
                "image_id": f"{layout_name}:{record.stem}", "path": record.image_path,
                "mask_path": record.mask_path, "width": record.width, "height": record.height,
                "stem": record.stem, "lesion_id": record.lesion_id, "layout": layout_name,
                "subset": record.split, "label": label,
                "class_id": None if attributes else schemes.class_names(scheme).index(label) + 1,
                "diagnosis": record.diagnosis, "raw_label": record.raw_label, "criteria": record.criteria,
            }
            if attributes:
                entry.update(attribute_masks.attribute_entry_fields(record, scheme))
            entries.append(entry)
        if not entries:
            raise DatasetError(f"{root}: no image of subset {subset!r} has a label for classes={scheme!r} "
                               f"({len(skipped)} skipped); use classes='lesion' or add the label file")
        return entries, skipped, layout_name, root, official

    @staticmethod
    def _unusable(record, scheme):
        """Why ``record`` lacks the masks ``scheme`` reads (attribute masks, or the lesion mask), or None."""
        if schemes.is_attribute_scheme(scheme):
            if not record.attribute_masks:
                return f"no usable attribute mask (classes={scheme!r} reads attribute masks)"
            return None
        if record.mask_path is None:
            return (f"no lesion mask (classes={scheme!r} reads lesion masks; where the image has attribute "
                    f"masks, classes='isic2018_attributes' reads those)")
        return None

    def _synthetic_entries(self, subset, scheme, seed, fractions, size, count):
        """Plan the synthetic images of ``subset``; return (entries, [], "synthetic", "synthetic")."""
        try:
            height, width = int(size[0]), int(size[1])
        except (TypeError, ValueError, IndexError) as err:
            raise DatasetError(f"size={size!r}: expected (height, width) in pixels") from err
        if height < 16 or width < 16:
            raise DatasetError(f"size={size!r}: synthetic images need at least 16x16 pixels")
        if count is not None and (not isinstance(count, (int, np.integer)) or count < 1):
            raise DatasetError(f"count={count!r}: must be a positive int")
        if subset == "all":
            total = count if count is not None else sum(SYNTHETIC_COUNTS.values())
            plan = dict(zip(splits.SUBSETS, apportion(total, fractions)))
        else:
            plan = {subset: count if count is not None else SYNTHETIC_COUNTS[subset]}
        entries = []
        for name, number in plan.items():
            code = SUBSET_CODES[name]
            for index, wanted in enumerate(synthetic.plan_diagnoses(number, scheme, None, (seed, code))):
                key = (seed, code, index)
                # Resolve the class to one synthetic diagnosis now, so labels are known before pixels.
                diagnosis = synthetic.resolve_diagnosis(wanted, scheme, np.random.default_rng(key + (1,)))
                label = schemes.to_class(diagnosis, scheme)
                stem = f"synthetic_{name}_{index:05d}"
                entries.append({
                    "image_id": f"synthetic:{seed}:{name}:{index}", "path": f"synthetic:{seed}:{name}:{index}",
                    "mask_path": None, "width": width, "height": height, "stem": stem, "lesion_id": stem,
                    "layout": "synthetic", "subset": name, "label": label,
                    "class_id": schemes.class_names(scheme).index(label) + 1,
                    "diagnosis": diagnosis, "raw_label": diagnosis, "seed": key,
                })
        return entries, [], "synthetic", "synthetic"

    # ----------------------------------------------------------------- pixels

    def _synthetic(self, image_id):
        """(image uint8 [H, W, 3], mask bool [H, W]) of a synthetic image, cached for the last id."""
        cached_id, cached = self._synthetic_cache
        if cached_id == image_id:
            return cached
        info = self.image_info[image_id]
        image, mask, _ = synthetic.generate(info["seed"], (info["height"], info["width"]),
                                            diagnosis=info["diagnosis"])
        self._synthetic_cache = (image_id, (image, mask))
        return image, mask

    def load_image(self, image_id):
        """The image as RGB uint8 [H, W, 3]; ValueError naming the file when it cannot be decoded."""
        info = self.image_info[image_id]
        if info["layout"] == "synthetic":
            return self._synthetic(image_id)[0].copy()
        image = read_image_rgb(info["path"])
        if image.shape[:2] != (info["height"], info["width"]):
            raise ValueError(f"{info['path']}: decoded size {image.shape[1]}x{image.shape[0]} differs from "
                             f"the {info['width']}x{info['height']} read at load time; reload the dataset")
        return image

    def load_mask(self, image_id):
        """The lesion as one instance: (bool [H, W, 1], int32 [1] class id).

        Disconnected pieces stay one instance (ISIC convention: one lesion per
        image). With an attribute scheme: (bool [H, W, N], int32 [N]), one
        instance per connected component of each attribute mask, N >= 0
        (skinlesion.attribute_masks). Raises ValueError naming the mask file
        when it cannot be decoded or its size differs from the image's.
        """
        info = self.image_info[image_id]
        if schemes.is_attribute_scheme(self.scheme):
            return attribute_masks.attribute_instances(info, self.scheme)
        if info["layout"] == "synthetic":
            mask = self._synthetic(image_id)[1].copy()
        else:
            mask = layouts.read_mask_bool(info["mask_path"])
            if mask.shape != (info["height"], info["width"]):
                raise ValueError(f"{info['mask_path']}: mask size {mask.shape[1]}x{mask.shape[0]} differs "
                                 f"from image size {info['width']}x{info['height']} of {info['path']}")
        return mask[..., None], np.array([info["class_id"]], np.int32)

    def load_label(self, image_id):
        """Class name of the image in the loaded scheme (e.g. "melanoma"), or None."""
        return self.image_info[image_id].get("label")

    def image_reference(self, image_id):
        """The image file path, or a description of a synthetic image."""
        info = self.image_info[image_id]
        if info["layout"] == "synthetic":
            return f"synthetic image seed={info['seed']} ({info['diagnosis']})"
        return info["path"]
