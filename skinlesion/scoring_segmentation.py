"""ISIC Task 1 scoring: per-image lesion-mask metrics and folder pairing.

The numbers agree with the official scorer, ``isic-challenge-scoring`` 5.6.0
(checked in tests/test_scoring.py); this module does not import it.

Conventions (official):
- foreground is a value > 128 (uint8 0..255 masks); bool masks are taken as
  they are;
- per image, from the pixel confusion counts TP, TN, FP, FN:
  accuracy = (TP + TN) / all; sensitivity = TP / (TP + FN), 1.0 when the
  truth is empty; specificity = TN / (TN + FP), 1.0 when the truth covers
  the whole image; Jaccard = TP / (TP + FP + FN) and Dice = 2TP / (2TP + FP +
  FN), both 1.0 when truth and prediction are both empty (so an empty truth
  with a non-empty prediction scores 0, as does a missed lesion);
  threshold_jaccard = Jaccard if Jaccard >= 0.65 else 0;
- the dataset score is the plain mean over images.

Import it as ``skinlesion.scoring`` (which also holds the Task 3 scores).
"""
import logging
import os
import re

import numpy as np

from skinlesion.layouts.files import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

SEGMENTATION_METRICS = ("jaccard", "threshold_jaccard", "dice",
                        "sensitivity", "specificity", "accuracy")
JACCARD_THRESHOLD = 0.65
FOREGROUND_THRESHOLD = 128
MASK_SUFFIXES = ("_segmentation", "_Segmentation", "_lesion", "_mask")
# Any image file may hold a mask (the official scorer reads what PIL reads).
MASK_EXTENSIONS = IMAGE_EXTENSIONS
ISIC_ID_PATTERN = re.compile(r"ISIC_(\d{7})")
# The official scorer skips these names in a truth folder.
IGNORED_NAMES = {"ATTRIBUTION.txt", "LICENSE.txt"}


def binarize_mask(mask):
    """Foreground pixels of a mask by the ISIC rule.

    mask: [H, W] (or [H, W, 1]) bool, or numeric with foreground > 128
        (uint8 0/255 images, 16-bit 0/65535 images).
    Returns: bool [H, W].
    """
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"A segmentation mask must be [H, W], got shape {mask.shape}")
    if mask.dtype == bool:
        return mask
    binary = mask > FOREGROUND_THRESHOLD
    if not binary.any() and mask.size and 0 < mask.max() <= 1:
        logger.warning("Mask holds values in 0..1 but foreground is > 128 (the ISIC rule), "
                       "so it counts as empty; pass a bool mask or a 0/255 image")
    return binary


def confusion_counts(truth_mask, pred_mask):
    """Pixel confusion counts of a predicted mask against the truth.

    truth_mask, pred_mask: [H, W] bool or uint8 (foreground > 128), same size.
    Returns: dict of int TP, TN, FP, FN.
    """
    truth = binarize_mask(truth_mask)
    pred = binarize_mask(pred_mask)
    if truth.shape != pred.shape:
        raise ValueError(f"Mask sizes differ: truth {truth.shape}, prediction {pred.shape}")
    true_positive = int(np.count_nonzero(truth & pred))
    false_positive = int(np.count_nonzero(~truth & pred))
    false_negative = int(np.count_nonzero(truth & ~pred))
    true_negative = truth.size - true_positive - false_positive - false_negative
    return {"TP": true_positive, "TN": true_negative, "FP": false_positive, "FN": false_negative}


def metrics_from_counts(counts):
    """ISIC Task 1 metrics from pixel confusion counts, with official conventions.

    counts: dict with TP, TN, FP, FN (numbers, total > 0).
    Returns: dict of float jaccard, threshold_jaccard, dice, sensitivity,
        specificity, accuracy.
    """
    tp, tn, fp, fn = (float(counts[key]) for key in ("TP", "TN", "FP", "FN"))
    total = tp + tn + fp + fn
    if total <= 0:
        raise ValueError("Cannot score an empty (0-pixel) mask")
    # Undefined ratios score 1.0: a "freebie" in the official scorer.
    sensitivity = tp / (tp + fn) if tp + fn > 0 else 1.0
    specificity = tn / (tn + fp) if tn + fp > 0 else 1.0
    errors_and_hits = tp + fp + fn
    jaccard = tp / errors_and_hits if errors_and_hits > 0 else 1.0
    dice = 2 * tp / (2 * tp + fp + fn) if errors_and_hits > 0 else 1.0
    return {
        "jaccard": jaccard,
        "threshold_jaccard": jaccard if jaccard >= JACCARD_THRESHOLD else 0.0,
        "dice": dice,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "accuracy": (tp + tn) / total,
    }


def segmentation_metrics(truth_mask, pred_mask):
    """ISIC Task 1 metrics of one predicted lesion mask.

    truth_mask, pred_mask: [H, W] bool, or uint8 0..255 with foreground > 128.
    Returns: dict of float jaccard, threshold_jaccard, dice, sensitivity,
        specificity, accuracy (conventions in the module docstring).
    """
    return metrics_from_counts(confusion_counts(truth_mask, pred_mask))


def mean_metrics(per_image):
    """Mean of each segmentation metric over images.

    per_image: list of dicts holding the SEGMENTATION_METRICS keys.
    Returns: dict metric -> float mean, or None for every metric if the list
        is empty.
    """
    if not per_image:
        return {name: None for name in SEGMENTATION_METRICS}
    return {name: float(np.mean([row[name] for row in per_image]))
            for name in SEGMENTATION_METRICS}


def _iter_mask_pairs(pairs):
    """Normalize the accepted pair layouts to (image_id, truth, prediction).

    pairs: mapping image_id -> (truth, prediction); or an iterable of
        (truth, prediction), (image_id, truth, prediction) tuples, or dicts
        with "truth" and "prediction" (and optionally "image").
    Yields: (image_id, truth [H, W], prediction [H, W]).
    """
    if hasattr(pairs, "items"):
        for image_id, (truth, prediction) in pairs.items():
            yield image_id, truth, prediction
        return
    for index, item in enumerate(pairs):
        if isinstance(item, dict):
            yield item.get("image", index), item["truth"], item["prediction"]
        elif len(item) == 3:
            yield item[0], item[1], item[2]
        elif len(item) == 2:
            yield index, item[0], item[1]
        else:
            raise ValueError(f"Pair {index}: expected (truth, prediction) or "
                             f"(image_id, truth, prediction), got {len(item)} items")


def score_segmentation(pairs):
    """Score a set of predicted lesion masks as ISIC Task 1 does.

    pairs: see _iter_mask_pairs: {image_id: (truth, pred)}, [(truth, pred)],
        [(image_id, truth, pred)] or [{"image", "truth", "prediction"}];
        masks are [H, W] bool or uint8 (foreground > 128).
    Returns: {"per_image": [{"image": id, <6 metrics>}], "mean": {<6 metrics>},
              "count": number of images}.
    """
    per_image = []
    for image_id, truth, prediction in _iter_mask_pairs(pairs):
        row = {"image": image_id}
        row.update(segmentation_metrics(truth, prediction))
        per_image.append(row)
    return {"per_image": per_image, "mean": mean_metrics(per_image), "count": len(per_image)}


def mask_key(filename):
    """The key that pairs a truth mask file with its prediction.

    filename: a file name or path.
    Returns: "ISIC_nnnnnnn" when the name holds an ISIC id; otherwise the
        stem with trailing _segmentation / _Segmentation / _lesion / _mask
        removed (PH2's IMD002_lesion.bmp -> "IMD002").
    """
    stem = os.path.splitext(os.path.basename(filename))[0]
    match = ISIC_ID_PATTERN.search(stem)
    if match:
        return f"ISIC_{match.group(1)}"
    stripped = True
    while stripped:
        stripped = False
        for suffix in MASK_SUFFIXES:
            if stem.endswith(suffix) and len(stem) > len(suffix):
                stem = stem[:-len(suffix)]
                stripped = True
    return stem


def _prediction_keys(filename):
    """Keys under which a prediction file can match a truth file.

    filename: a prediction file name.
    Returns: set of keys: mask_key(filename), plus "ISIC_nnnnnnn" when the
        stem holds a bare 7-digit number (the official scorer matches a
        prediction by the id's digits anywhere in its name).
    """
    keys = {mask_key(filename)}
    stem = os.path.splitext(os.path.basename(filename))[0]
    for digits in re.findall(r"(?<!\d)(\d{7})(?!\d)", stem):
        keys.add(f"ISIC_{digits}")
    return keys


def load_mask_file(path):
    """Read a mask image as a 2-D array, converting 1-bit and colour files.

    path: image file. Returns: [H, W] uint8 (or uint16 / int32 for 16-bit
        files), foreground > 128. Raises OSError / ValueError when unreadable.
    """
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if image.mode == "1":
            image = image.convert("L")
        elif image.mode not in ("L", "I;16", "I;16B", "I;16L", "I", "F"):
            logger.warning("%s: mode %s is not greyscale (the official scorer rejects it); "
                           "converted to greyscale", path, image.mode)
            image = image.convert("L")
        array = np.asarray(image)
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel image, got shape {array.shape}")
    return array


def _list_mask_files(folder):
    """Image files of a folder, sorted by name.

    folder: directory path. Returns: list of file names (not paths).
    """
    names = []
    for name in sorted(os.listdir(folder)):
        if name in IGNORED_NAMES or name.startswith("."):
            continue
        if not os.path.isfile(os.path.join(folder, name)):
            continue
        if os.path.splitext(name)[1].lower() in MASK_EXTENSIONS:
            names.append(name)
    return names


def score_mask_folders(truth_dir, pred_dir):
    """Score a folder of predicted masks against a folder of truth masks.

    truth_dir: folder of truth masks (ISIC_nnnnnnn_segmentation.png, PH2
        IMDnnn_lesion.bmp, or any name); pred_dir: folder of predictions.
    A prediction pairs with a truth file by ISIC id (ISIC_(\\d{7}), or the bare
    7 digits in the prediction's name) and otherwise by stem with the
    _segmentation / _Segmentation / _lesion / _mask suffixes removed.

    Nothing here raises on bad files: an unreadable mask, a size mismatch or
    an ambiguous match is skipped with a logged line. Where the official
    scorer stops at a truth image with no prediction, this lists it under
    "missing", scores the rest, and says so in "notes".

    Returns: {"per_image": [{"image", "truth_file", "prediction_file",
              <6 metrics>}], "mean": {<6 metrics>}, "count": images scored,
              "missing": [truth file names without a prediction],
              "skipped": [{"file", "reason"}],
              "unmatched_predictions": [prediction file names never used],
              "notes": [str]}.
    """
    for label, folder in (("Truth", truth_dir), ("Prediction", pred_dir)):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{label} mask folder not found: {folder}")
    truth_files = _list_mask_files(truth_dir)
    pred_files = _list_mask_files(pred_dir)
    preds_by_key = {}
    for name in pred_files:
        for key in _prediction_keys(name):
            preds_by_key.setdefault(key, []).append(name)

    per_image, missing, skipped, used = [], [], [], set()
    for truth_name in truth_files:
        key = mask_key(truth_name)
        candidates = preds_by_key.get(key, [])
        if not candidates:
            logger.warning("%s: no prediction found (looked for key %s in %s)",
                           truth_name, key, pred_dir)
            missing.append(truth_name)
            continue
        if len(candidates) > 1:
            reason = f"several predictions match: {', '.join(candidates)}"
            logger.warning("%s: skipped, %s", truth_name, reason)
            skipped.append({"file": truth_name, "reason": reason})
            used.update(candidates)
            continue
        pred_name = candidates[0]
        used.add(pred_name)
        row = _score_file_pair(os.path.join(truth_dir, truth_name),
                               os.path.join(pred_dir, pred_name), skipped)
        if row is not None:
            row.update({"image": key, "truth_file": truth_name, "prediction_file": pred_name})
            per_image.append(row)

    notes = []
    if missing:
        notes.append(f"{len(missing)} truth image(s) have no prediction; the official scorer "
                     f"stops with an error here, these means cover the {len(per_image)} "
                     "scored image(s) only")
    if skipped:
        notes.append(f"{len(skipped)} file(s) skipped (see 'skipped')")
    ordered = [{"image": row["image"], "truth_file": row["truth_file"],
                "prediction_file": row["prediction_file"],
                **{name: row[name] for name in SEGMENTATION_METRICS}} for row in per_image]
    return {
        "per_image": ordered,
        "mean": mean_metrics(per_image),
        "count": len(per_image),
        "missing": missing,
        "skipped": skipped,
        "unmatched_predictions": [name for name in pred_files if name not in used],
        "notes": notes,
    }


def _score_file_pair(truth_path, pred_path, skipped):
    """Metrics of one truth / prediction file pair, or None if it cannot be scored.

    truth_path, pred_path: mask files. skipped: list that receives
        {"file", "reason"} when the pair is skipped.
    Returns: dict of the 6 metrics, or None.
    """
    masks = []
    for path in (truth_path, pred_path):
        try:
            masks.append(load_mask_file(path))
        except (OSError, ValueError) as error:
            reason = f"unreadable mask: {error}"
            logger.warning("%s: skipped, %s", path, reason)
            skipped.append({"file": os.path.basename(path), "reason": reason})
            return None
    truth, prediction = masks
    if truth.shape != prediction.shape:
        reason = (f"size {prediction.shape[1]}x{prediction.shape[0]} differs from the truth's "
                  f"{truth.shape[1]}x{truth.shape[0]} ({os.path.basename(truth_path)})")
        logger.warning("%s: skipped, %s", pred_path, reason)
        skipped.append({"file": os.path.basename(pred_path), "reason": reason})
        return None
    return segmentation_metrics(truth, prediction)
