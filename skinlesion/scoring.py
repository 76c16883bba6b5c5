"""ISIC challenge scoring: Task 1 segmentation and Task 3 / Part 3 classification.

The numbers agree with the official scorer, ``isic-challenge-scoring`` 5.6.0
(checked in tests/test_scoring.py); this module does not import it.

Segmentation conventions (official):
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

Classification conventions (official):
- per class, truth and prediction are positive when > 0.5; sensitivity and
  specificity at that cut; AUC and average precision from scikit-learn;
  auc_sens_80 is the raw (not McClish-corrected) area under the ROC curve
  above 80 % sensitivity;
- balanced accuracy: the predicted class is the arg-max of the
  probabilities; a row whose maximum is tied between classes counts as
  wrong ("undecided"); mean of per-class recall over the classes present in
  the truth.
"""
import collections
import csv
import logging
import math
import os
import re

import numpy as np

logger = logging.getLogger(__name__)

SEGMENTATION_METRICS = ("jaccard", "threshold_jaccard", "dice",
                        "sensitivity", "specificity", "accuracy")
JACCARD_THRESHOLD = 0.65
FOREGROUND_THRESHOLD = 128
MASK_SUFFIXES = ("_segmentation", "_Segmentation", "_lesion", "_mask")
MASK_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".gif", ".tif", ".tiff")
ISIC_ID_PATTERN = re.compile(r"ISIC_(\d{7})")
# The official scorer skips these names in a truth folder.
IGNORED_NAMES = {"ATTRIBUTION.txt", "LICENSE.txt"}


# --------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------

def _json_number(value):
    """A float for JSON: NaN and infinities become None.

    value: number or None. Returns: float or None.
    """
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def auc_above_sensitivity(truth_binary, scores, sensitivity_threshold=0.8):
    """Raw area under the ROC curve where sensitivity >= a threshold.

    truth_binary: bool [N] with both classes present; scores: float [N];
    sensitivity_threshold: in (0, 1].
    Returns: float in [0, 1 - threshold] (not McClish-normalized; ISIC 2017's
        secondary metric). The curve is cut at the threshold by linear
        interpolation of the false-positive rate, as the official scorer does.
    """
    from sklearn.metrics import auc, roc_curve

    if not 0 < sensitivity_threshold <= 1:
        raise ValueError(f"sensitivity_threshold must be in (0, 1], got {sensitivity_threshold}")
    fp_rates, tp_rates, _ = roc_curve(truth_binary, scores, drop_intermediate=False)
    # First curve point at or above the threshold (tp_rates is sorted and
    # starts at 0, so the index is >= 1).
    cut = int(np.searchsorted(tp_rates, sensitivity_threshold, side="left"))
    fp_rate_at_cut = np.interp(sensitivity_threshold, tp_rates[cut - 1:cut + 1],
                               fp_rates[cut - 1:cut + 1])
    tp_segment = np.concatenate([[sensitivity_threshold], tp_rates[cut:]])
    fp_segment = np.concatenate([[fp_rate_at_cut], fp_rates[cut:]])
    return float(auc(fp_segment, tp_segment))


def _to_onehot(truth, class_count):
    """Truth as a float [N, K] table.

    truth: int class indices [N] or a [N, K] one-hot / probability table.
    Returns: float [N, K].
    """
    truth = np.asarray(truth)
    if truth.ndim == 1:
        indices = truth.astype(np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= class_count):
            raise ValueError(f"Class indices must lie in 0..{class_count - 1}")
        onehot = np.zeros((len(indices), class_count))
        onehot[np.arange(len(indices)), indices] = 1.0
        return onehot
    if truth.ndim != 2 or truth.shape[1] != class_count:
        raise ValueError(f"Truth must be class indices [N] or [N, {class_count}], "
                         f"got shape {truth.shape}")
    return truth.astype(np.float64)


def _decided_labels(table):
    """Arg-max class per row, -1 where the maximum is tied ("undecided").

    table: float [N, K]. Returns: int [N].
    """
    if table.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    labels = np.argmax(table, axis=1)
    tied = np.sum(table == table.max(axis=1, keepdims=True), axis=1) > 1
    labels[tied] = -1
    return labels


def balanced_accuracy(truth, probs):
    """Balanced multiclass accuracy as the official ISIC 2018 Task 3 scorer.

    truth: [N, K] one-hot (or class indices [N]); probs: float [N, K].
    Returns: float, mean over classes present in the truth of the share of
        their images whose arg-max prediction is that class; a tied maximum
        counts as wrong, a truth row with a tied maximum is left out.
        NaN if no truth row has a single class.
    """
    probs = np.asarray(probs, dtype=np.float64)
    truth_labels = _decided_labels(_to_onehot(truth, probs.shape[1]))
    pred_labels = _decided_labels(probs)
    recalls = []
    for class_index in range(probs.shape[1]):
        of_class = truth_labels == class_index
        if of_class.any():
            recalls.append(np.mean(pred_labels[of_class] == class_index))
    return float(np.mean(recalls)) if recalls else float("nan")


def _class_metrics(truth_binary, scores):
    """Metrics of one class column.

    truth_binary: bool [N]; scores: float [N].
    Returns: dict auc, ap, auc_sens_80, sensitivity, specificity (float or
        NaN where undefined), positives, negatives (int).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    positives = int(truth_binary.sum())
    negatives = int(truth_binary.size - positives)
    predicted = scores > 0.5
    result = {
        "auc": float("nan"), "ap": float("nan"), "auc_sens_80": float("nan"),
        "sensitivity": (float(np.sum(predicted & truth_binary)) / positives
                        if positives else float("nan")),
        "specificity": (float(np.sum(~predicted & ~truth_binary)) / negatives
                        if negatives else float("nan")),
        "positives": positives, "negatives": negatives,
    }
    if positives:
        result["ap"] = float(average_precision_score(truth_binary, scores))
    if positives and negatives:
        result["auc"] = float(roc_auc_score(truth_binary, scores))
        result["auc_sens_80"] = auc_above_sensitivity(truth_binary, scores, 0.8)
    return result


def score_classification(truth, probs, class_names):
    """Score lesion class probabilities as ISIC Task 3 / Part 3 does.

    truth: [N, K] one-hot (or 0/1 per column, as ISIC 2017's truth CSV) or
        int class indices [N]; probs: float [N, K] predicted probabilities;
        class_names: K names, in column order.
    Returns a JSON-serializable dict:
        {"classes": [names], "count": N,
         "per_class": {name: {"auc", "ap", "auc_sens_80", "sensitivity",
                              "specificity", "positives", "negatives"}},
         "auc": {name: auc}, "balanced_accuracy": float,
         "mean_auc": mean over classes with a defined AUC,
         "mean_ap": likewise for AP, "notes": [str]}.
        Undefined values (AUC of a class without positives or negatives,
        sensitivity without positives, ...) are None and listed in notes.
        (The official scorer crashes on such a class; its "1.0 freebie" for
        sensitivity / specificity only ever shows in segmentation.)
    """
    class_names = [str(name) for name in class_names]
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise ValueError(f"probs must be [N, {len(class_names)}] (one column per class "
                         f"{class_names}), got shape {probs.shape}")
    truth_table = _to_onehot(truth, len(class_names))
    if truth_table.shape[0] != probs.shape[0]:
        raise ValueError(f"truth has {truth_table.shape[0]} rows, probs {probs.shape[0]}")

    per_class, notes = {}, []
    for column, name in enumerate(class_names):
        metrics = _class_metrics(truth_table[:, column] > 0.5, probs[:, column])
        undefined = [key for key, value in metrics.items()
                     if isinstance(value, float) and math.isnan(value)]
        if undefined:
            notes.append(f"class '{name}' has {metrics['positives']} positive and "
                         f"{metrics['negatives']} negative image(s): "
                         f"{', '.join(undefined)} undefined (None)")
        per_class[name] = metrics

    aucs = [m["auc"] for m in per_class.values() if not math.isnan(m["auc"])]
    aps = [m["ap"] for m in per_class.values() if not math.isnan(m["ap"])]
    for note in notes:
        logger.warning("classification scoring: %s", note)
    return {
        "classes": class_names,
        "count": int(probs.shape[0]),
        "per_class": {name: {key: (_json_number(value) if isinstance(value, float) else value)
                             for key, value in metrics.items()}
                      for name, metrics in per_class.items()},
        "auc": {name: _json_number(metrics["auc"]) for name, metrics in per_class.items()},
        "balanced_accuracy": _json_number(balanced_accuracy(truth_table, probs)),
        "mean_auc": _json_number(np.mean(aucs)) if aucs else None,
        "mean_ap": _json_number(np.mean(aps)) if aps else None,
        "notes": notes,
    }


_IMAGE_COLUMNS = ("image", "image_id")
_WEIGHT_COLUMNS = ("score_weight", "validation_weight")
_IMAGE_SUFFIX = re.compile(r"\.(jpe?g|png|bmp)$", re.IGNORECASE)


def read_probability_csv(path):
    """Read an ISIC-style table: an image column and one column per class.

    path: CSV file with a header; the image column is "image" (or
        "image_id"); file extensions (.jpg ...) are stripped from image names.
    Returns: (image_ids [N] list of str, columns [K] list of str,
              values float [N, K], weights dict column -> float [N] for
              score_weight / validation_weight if present).
    Raises ValueError naming the file on a missing image column, duplicate
    images or non-numeric values.
    """
    with open(path, newline="", encoding="utf-8-sig") as stream:
        rows = list(csv.reader(stream))
    if not rows:
        raise ValueError(f"{path}: empty CSV")
    header = [name.strip() for name in rows[0]]
    image_column = next((name for name in _IMAGE_COLUMNS if name in header), None)
    if image_column is None:
        raise ValueError(f"{path}: no 'image' column (header: {header})")
    image_index = header.index(image_column)
    value_columns = [name for name in header if name != image_column]
    image_ids, values = [], []
    for line_number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ValueError(f"{path}, line {line_number}: {len(row)} fields, "
                             f"header has {len(header)}")
        image_ids.append(_IMAGE_SUFFIX.sub("", row[image_index].strip()))
        try:
            values.append([float(cell) for index, cell in enumerate(row) if index != image_index])
        except ValueError as error:
            raise ValueError(f"{path}, line {line_number}: {error}") from None
    if len(set(image_ids)) != len(image_ids):
        duplicates = sorted(i for i, n in collections.Counter(image_ids).items() if n > 1)
        raise ValueError(f"{path}: duplicate image rows {duplicates[:10]}")
    table = np.asarray(values, dtype=np.float64).reshape(len(image_ids), len(value_columns))
    weights = {name: table[:, value_columns.index(name)]
               for name in _WEIGHT_COLUMNS if name in value_columns}
    keep = [index for index, name in enumerate(value_columns) if name not in _WEIGHT_COLUMNS]
    return image_ids, [value_columns[i] for i in keep], table[:, keep], weights


def score_classification_files(truth_csv, pred_csv):
    """Score a probabilities.csv against a truth CSV of the same shape.

    truth_csv: "image" + one 0/1 column per class (ISIC 2018 Task 3 /
        2017 Part 3 ground truth); pred_csv: "image" + the same class columns
        (ours: OUT/probabilities.csv). Rows are matched by image name.
    Returns: score_classification's dict plus "missing" (truth images
        without a prediction row), "extra" (prediction rows not in the truth)
        and "skipped" (rows with NaN / out-of-range probabilities); notes say
        when these differ from the official scorer, which stops instead.
        score_weight columns are not applied (noted if any weight is not 1).
    """
    truth_ids, classes, truth_values, weights = read_probability_csv(truth_csv)
    pred_ids, pred_columns, pred_values, _ = read_probability_csv(pred_csv)
    absent = [name for name in classes if name not in pred_columns]
    if absent:
        raise ValueError(f"{pred_csv}: missing class column(s) {absent}; "
                         f"the truth {truth_csv} has {classes}")
    notes = []
    extra_columns = [name for name in pred_columns if name not in classes]
    if extra_columns:
        notes.append(f"prediction columns {extra_columns} are not truth classes; ignored")
    column_order = [pred_columns.index(name) for name in classes]
    pred_row = {image_id: row for row, image_id in enumerate(pred_ids)}

    rows_truth, rows_pred, missing, skipped = [], [], [], []
    for row, image_id in enumerate(truth_ids):
        if image_id not in pred_row:
            missing.append(image_id)
            continue
        probabilities = pred_values[pred_row[image_id], column_order]
        if not np.all(np.isfinite(probabilities)) or np.any(
                (probabilities < 0) | (probabilities > 1)):
            skipped.append({"image": image_id, "reason": "probabilities missing or outside [0, 1]"})
            continue
        rows_truth.append(truth_values[row])
        rows_pred.append(probabilities)
    truth_set = set(truth_ids)
    extra = [image_id for image_id in pred_ids if image_id not in truth_set]

    for label, items in (("truth image(s) without a prediction", missing),
                         ("prediction row(s) not in the truth", extra),
                         ("row(s) with invalid probabilities skipped", skipped)):
        if items:
            logger.warning("%s: %d %s", pred_csv, len(items), label)
            notes.append(f"{len(items)} {label}; the official scorer stops with an error here")
    score_weights = weights.get("score_weight")
    if score_weights is not None and np.any(score_weights != 1):
        notes.append("score_weight column present but not applied (all images weigh 1)")

    result = score_classification(
        np.asarray(rows_truth).reshape(-1, len(classes)),
        np.asarray(rows_pred).reshape(-1, len(classes)), classes)
    result["notes"] = notes + result["notes"]
    result.update({"missing": missing, "extra": extra, "skipped": skipped})
    return result
