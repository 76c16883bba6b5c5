"""ISIC Task 3 / 2017 Part 3 scoring: lesion class probabilities against the truth.

The numbers agree with the official scorer, ``isic-challenge-scoring`` 5.6.0
(checked in tests/test_scoring.py); this module does not import it.

Conventions (official):
- per class, truth and prediction are positive when > 0.5; sensitivity and
  specificity at that cut; AUC and average precision from scikit-learn;
  auc_sens_80 is the raw (not McClish-corrected) area under the ROC curve
  above 80 % sensitivity;
- balanced accuracy: the predicted class is the arg-max of the
  probabilities; a row whose maximum is tied between classes counts as
  wrong ("undecided"); mean of per-class recall over the classes present in
  the truth.

Import it as ``skinlesion.scoring`` (which also holds the Task 1 scores).
"""
import collections
import csv
import logging
import math
import re

import numpy as np

from skinlesion.jsonio import json_safe

logger = logging.getLogger(__name__)




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
        "per_class": json_safe(per_class),
        "auc": {name: json_safe(metrics["auc"]) for name, metrics in per_class.items()},
        "balanced_accuracy": json_safe(balanced_accuracy(truth_table, probs)),
        "mean_auc": json_safe(np.mean(aucs)) if aucs else None,
        "mean_ap": json_safe(np.mean(aps)) if aps else None,
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
