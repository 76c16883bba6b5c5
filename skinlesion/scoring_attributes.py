"""ISIC 2018 Task 2 scoring: lesion attribute masks, Jaccard per attribute accumulated over images.

    from skinlesion import scoring
    scoring.task2_jaccard([(truth, prediction), ...])   # {attribute: mask [H, W]} per image
    scoring.task2_jaccard((truth_dir, pred_dir))       # folders of ISIC_xxxxxxx_attribute_<name>.png

Definition. The challenge page (https://challenge.isic-archive.com/landing/2018/46)
asks for one 0/255 single-channel PNG per image and attribute, named
``ISIC_<id>_attribute_<name>.png``, of the image's size. The challenge
paper, Codella et al., "Skin Lesion Analysis Toward Melanoma Detection 2018:
A Challenge Hosted by the International Skin Imaging Collaboration (ISIC)",
arXiv:1902.03368, adapts the Jaccard index because an attribute is absent
from many images: it is computed per attribute over the whole image set,
not averaged per image (read here through its summary at
https://www.emergentmind.com/papers/1902.03368; the paper's full Task 2
section was not at hand). The official scorer, ``isic-challenge-scoring``
5.6.0 (``isic_challenge_scoring/task2.py``, the project's test oracle and
the ISIC organisers' code), fixes the details, which this module follows
(tests/test_scoring_attributes.py checks it against that scorer):

- foreground is grey > 128 (bool masks are taken as they are);
- per image and attribute, the pixel counts TP, FP, FN, TN are divided by
  the image's pixel count (so every image weighs the same whatever its
  size);
- per attribute, these fractions are summed over all images and
  Jaccard = sum TP / (sum TP + sum FP + sum FN): an accumulated ratio, not
  a mean of per-image values;
- ``mean_jaccard`` is the mean of the per-attribute values (the issue's and
  the paper's summary); ``micro_jaccard`` is the scorer's "overall": the
  same ratio with the sums taken over every attribute together.

``normalize=False`` sums raw pixel counts instead (sum of intersections
over sum of unions); with images of one size the two agree exactly.

An attribute absent from every ground-truth image has union 0 when the
prediction is empty everywhere too: it scores 1.0 (the official scorer's
convention, as for Task 1's empty masks: nothing to find, nothing found);
any predicted pixel then makes it 0.0. Both count in the mean. An attribute
with no ground-truth file at all (or no image giving it) is not scored:
None, left out of the mean, and named in "notes". A missing prediction for
a ground-truth mask counts as an empty prediction in ``task2_jaccard`` on
pairs; the folder scorer lists it under "missing" and scores the rest (the
official scorer stops there).
"""
import logging
import os
import re

import numpy as np

from skinlesion.criteria import TASK2_ATTRIBUTES
from skinlesion.scoring_segmentation import (IGNORED_NAMES, _iter_mask_pairs, binarize_mask, confusion_counts,
                                             load_mask_file)

logger = logging.getLogger(__name__)

TASK2_FILE_PATTERN = re.compile(r"ISIC_(\d{7})_attribute_(" + "|".join(TASK2_ATTRIBUTES) + r")")


class AttributeTotals:
    """Accumulated (normalised) TP, FP, FN of one attribute over the images scored so far."""

    def __init__(self):
        """Empty totals."""
        self.tp = self.fp = self.fn = 0.0
        self.images = 0
        self.truth_present = 0

    def add(self, truth, prediction, normalize=True):
        """Add one image's masks: truth, prediction bool or uint8 [H, W] (foreground > 128), same size."""
        counts = confusion_counts(truth, prediction)
        scale = 1.0 / sum(counts.values()) if normalize else 1.0
        self.tp += counts["TP"] * scale
        self.fp += counts["FP"] * scale
        self.fn += counts["FN"] * scale
        self.images += 1
        self.truth_present += int(counts["TP"] + counts["FN"] > 0)

    @property
    def union(self):
        """Accumulated TP + FP + FN."""
        return self.tp + self.fp + self.fn

    def jaccard(self):
        """Accumulated TP / (TP + FP + FN); 1.0 when the union is 0; None when no image was added."""
        if not self.images:
            return None
        return self.tp / self.union if self.union > 0 else 1.0

    def as_dict(self):
        """{"jaccard", "intersection", "union", "images", "truth_present"} of this attribute."""
        return {"jaccard": self.jaccard(), "intersection": self.tp, "union": self.union,
                "images": self.images, "truth_present": self.truth_present}


def _summary(totals, notes):
    """The score dict of per-attribute totals {attribute: AttributeTotals}."""
    jaccard = {name: total.jaccard() for name, total in totals.items()}
    scored = [value for value in jaccard.values() if value is not None]
    unscored = [name for name, value in jaccard.items() if value is None]
    if unscored:
        notes.append(f"no ground truth for {', '.join(unscored)}: not scored, left out of mean_jaccard")
    tp = sum(t.tp for t in totals.values())
    union = sum(t.union for t in totals.values())
    return {"jaccard": jaccard, "mean_jaccard": float(np.mean(scored)) if scored else None,
            "micro_jaccard": (tp / union if union > 0 else 1.0) if scored else None,
            "per_attribute": {name: total.as_dict() for name, total in totals.items()}, "notes": notes}


class Task2Scorer:
    """task2_jaccard one image at a time, for a caller that cannot keep every mask (evaluate).

    add(truth, prediction) as task2_jaccard's per-image dicts; result() gives
    task2_jaccard's dict.
    """

    def __init__(self, attributes=TASK2_ATTRIBUTES, normalize=True):
        self.totals = {name: AttributeTotals() for name in attributes}
        self.normalize, self.images = normalize, 0

    def add(self, truth, prediction):
        """One image: truth, prediction {attribute: mask [H, W]}; an attribute absent from truth is unknown."""
        self.images += 1
        for name, total in self.totals.items():
            if truth.get(name) is None:
                continue
            truth_mask = binarize_mask(truth[name])
            predicted = (prediction or {}).get(name)
            try:
                total.add(truth_mask, np.zeros_like(truth_mask) if predicted is None else predicted, self.normalize)
            except ValueError as err:
                raise ValueError(f"attribute {name}: {err}") from err

    def result(self):
        """task2_jaccard's dict for the images added so far."""
        return {**_summary(self.totals, []), "images": self.images}


def _is_folder_pair(value):
    """True for (truth_dir, pred_dir): two paths."""
    return (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(item, (str, os.PathLike)) for item in value))


def task2_jaccard(pairs_or_folders, attributes=TASK2_ATTRIBUTES, normalize=True):
    """The ISIC 2018 Task 2 score: Jaccard per attribute accumulated over images, and their mean.

    pairs_or_folders: (truth_dir, pred_dir), scored by score_attribute_folders;
      or per image (truth, prediction) / (image_id, truth, prediction) tuples,
      {"truth", "prediction"} dicts or {image_id: (truth, prediction)}, where
      truth and prediction are {attribute: mask [H, W]} (bool, or uint8 with
      foreground > 128). An attribute missing from an image's truth is
      unknown there (the image does not count for it); one missing from its
      prediction is an empty prediction.
    attributes: the attributes to score (default the five of Task 2).
    normalize: divide each image's counts by its pixel count (official).
    Returns {"jaccard": {attribute: float or None}, "mean_jaccard",
    "micro_jaccard", "per_attribute": {attribute: {"jaccard", "intersection",
    "union", "images", "truth_present"}}, "images": N, "notes": [str]}
    (the folder form adds the fields of score_attribute_folders).
    """
    if _is_folder_pair(pairs_or_folders):
        return score_attribute_folders(*pairs_or_folders, attributes=attributes, normalize=normalize)
    scorer = Task2Scorer(attributes, normalize)
    for image_id, truth, prediction in _iter_mask_pairs(pairs_or_folders):
        try:
            scorer.add(truth, prediction)
        except ValueError as err:
            raise ValueError(f"image {image_id}, {err}") from err
    return scorer.result()


def _attribute_files(folder):
    """{(ISIC id, attribute): file name} of the attribute masks in ``folder``, plus the other file names."""
    found, others = {}, []
    for name in sorted(os.listdir(folder)):
        if name in IGNORED_NAMES or name.startswith(".") or not os.path.isfile(os.path.join(folder, name)):
            continue
        match = TASK2_FILE_PATTERN.search(name)
        if match:
            found.setdefault((f"ISIC_{match.group(1)}", match.group(2)), []).append(name)
        else:
            others.append(name)
    return found, others


def score_attribute_folders(truth_dir, pred_dir, attributes=TASK2_ATTRIBUTES, normalize=True):
    """Score a folder of predicted attribute masks against the ground-truth folder.

    Both folders hold ``ISIC_<id>_attribute_<name>.png`` (a prediction file
    may add a suffix, e.g. ``..._attribute_globules_prediction.png``); files
    pair by ISIC id and attribute. An unreadable mask, a size mismatch or
    several predictions for one truth file is skipped with a logged line.
    Returns task2_jaccard's dict plus "pairs" (files scored), "missing"
    (truth files without a prediction), "skipped" [{"file", "reason"}],
    "unmatched_predictions" (prediction files never used).
    """
    for label, folder in (("Truth", truth_dir), ("Prediction", pred_dir)):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{label} attribute mask folder not found: {folder}")
    truth_files, _ = _attribute_files(truth_dir)
    pred_files, pred_others = _attribute_files(pred_dir)
    totals = {name: AttributeTotals() for name in attributes}
    missing, skipped, used, images, pairs = [], [], set(), set(), 0
    for (image_id, attribute), names in sorted(truth_files.items()):
        if attribute not in totals:
            continue
        candidates = pred_files.get((image_id, attribute), [])
        used.update(candidates)
        if not candidates:
            logger.warning("%s: no prediction found in %s", names[0], pred_dir)
            missing.append(names[0])
            continue
        if len(names) > 1 or len(candidates) > 1:
            reason = f"several files for {image_id} {attribute}: {', '.join(names + candidates)}"
            logger.warning("%s: skipped, %s", names[0], reason)
            skipped.append({"file": names[0], "reason": reason})
            continue
        masks = _read_pair(os.path.join(truth_dir, names[0]), os.path.join(pred_dir, candidates[0]), skipped)
        if masks is not None:
            totals[attribute].add(*masks, normalize)
            images.add(image_id)
            pairs += 1
    notes = []
    if missing:
        notes.append(f"{len(missing)} truth mask(s) have no prediction; the official scorer stops with an "
                     f"error here, these scores cover the {pairs} scored pair(s) only")
    if skipped:
        notes.append(f"{len(skipped)} file(s) skipped (see 'skipped')")
    unmatched = sorted(pred_others + [n for names in pred_files.values() for n in names if n not in used])
    return {**_summary(totals, notes), "images": len(images), "pairs": pairs, "missing": missing,
            "skipped": skipped, "unmatched_predictions": unmatched}


def _read_pair(truth_path, pred_path, skipped):
    """(truth, prediction) arrays [H, W] of one file pair, or None after recording why it is skipped."""
    masks = []
    for path in (truth_path, pred_path):
        try:
            masks.append(load_mask_file(path))
        except (OSError, ValueError) as error:
            logger.warning("%s: skipped, unreadable mask: %s", path, error)
            skipped.append({"file": os.path.basename(path), "reason": f"unreadable mask: {error}"})
            return None
    if masks[0].shape != masks[1].shape:
        reason = (f"size {masks[1].shape[1]}x{masks[1].shape[0]} differs from the truth's "
                  f"{masks[0].shape[1]}x{masks[0].shape[0]} ({os.path.basename(truth_path)})")
        logger.warning("%s: skipped, %s", pred_path, reason)
        skipped.append({"file": os.path.basename(pred_path), "reason": reason})
        return None
    return masks
