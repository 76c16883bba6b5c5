"""The classifier's criteria head: one output per dermoscopic criterion beside the diagnosis softmax.

``ClassifierConfig(CRITERIA="ph2")`` (or "task2", or names joined by ",")
adds, on the pooled features the diagnosis head reads and the features'
maximum over positions (``criteria_features``), one output per entry
of ``skinlesion.criteria.head_outputs``: a sigmoid for a present/absent
criterion or colour, a softmax over the levels of an ordinal or categorical
one (asymmetry 0/1/2, pigment network typical/atypical, dots/globules
absent/typical/atypical). The model's outputs become a dict:
``{"class_probs": [B, K], "criterion_<output>": [B, units], ...}``.

Training is multi-task: loss = diagnosis cross-entropy + CRITERIA_WEIGHT x
the mean over outputs of each output's cross-entropy, where an image whose
criterion is unknown (target -1) is left out of that output's mean (the
``Masked*`` losses), so datasets that record only some criteria, or none,
train together. The diagnosis target may be -1 too (an image with criteria
but no diagnosis).
"""
import csv

import keras
import numpy as np
import tensorflow as tf

from mrcnn.config import ConfigError
from skinlesion import criteria as crit
from skinlesion.classifier_metrics import _auc, bootstrap_auc

CRITERIA_SETS = {"ph2": crit.PH2_CRITERIA, "task2": crit.TASK2_CRITERIA}
SEVEN_POINT_NAMES = frozenset(name for name, *_ in crit.SEVEN_POINT)
DIAGNOSIS = "class_probs"
PREFIX = "criterion_"


def criteria_names(field):
    """The criterion names of a CRITERIA field: "" -> (), "ph2" / "task2" -> their sets, else "a,b,..."."""
    text = str(field or "").strip()
    if not text:
        return ()
    names = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part in CRITERIA_SETS:
            names += [n for n in CRITERIA_SETS[part] if n not in names]
        elif part in crit.CRITERIA:
            names += [part] if part not in names else []
        else:
            raise ConfigError(f"CRITERIA={field!r}: {part!r} is neither a set ({', '.join(CRITERIA_SETS)}) nor a "
                              f"criterion ({', '.join(crit.CRITERIA)})")
    return tuple(names)


def outputs_of(config):
    """The criteria outputs (skinlesion.criteria.Output) of a ClassifierConfig; [] without CRITERIA."""
    return crit.head_outputs(criteria_names(getattr(config, "CRITERIA", "")))


def key(output):
    """The model's output name of a criteria output: criterion_<output name>."""
    return PREFIX + output.name


def criteria_features(pooled, features):
    """The criteria heads' input [B, 2C]: the diagnosis head's pooled features [B, C] beside the
    maximum of the backbone features [B, h, w, C] over positions.

    A structure is there when it is anywhere: a few dots or a streak at one
    edge move a spatial mean little, their maximum much.
    """
    peak = keras.layers.GlobalMaxPooling2D(name="criteria_max_pool")(features)
    return keras.layers.Concatenate(name="criteria_features")([pooled, peak])


def add_heads(pooled, features, outputs):
    """Keras tensors {criterion_<name>: [B, units]} (float32) from pooled [B, C] and features [B, h, w, C]."""
    joined = criteria_features(pooled, features)
    heads = {}
    for out in outputs:
        activation = "sigmoid" if out.binary else "softmax"
        heads[key(out)] = keras.layers.Dense(out.units, activation=activation, dtype="float32", name=key(out))(joined)
    return heads


def _valid_mean(values, valid):
    """Per-sample values [B] scaled so that a "sum" reduction gives their mean over the valid samples."""
    valid = tf.cast(valid, values.dtype)
    return values * valid / tf.maximum(tf.reduce_sum(valid), 1.0)


class MaskedSparseCrossEntropy(keras.losses.Loss):
    """Sparse categorical cross-entropy of softmax [B, K] with int targets [B]; targets -1 are left out."""

    def __init__(self, name="masked_sparse_ce", **kwargs):
        super().__init__(name=name, reduction="sum", **kwargs)

    def call(self, y_true, y_pred):
        y_true = tf.reshape(tf.cast(y_true, tf.int32), [-1])
        loss = keras.losses.sparse_categorical_crossentropy(tf.maximum(y_true, 0), y_pred)
        return _valid_mean(loss, y_true >= 0)


class MaskedBinaryCrossEntropy(keras.losses.Loss):
    """Binary cross-entropy of sigmoid [B, 1] with targets [B] in {0, 1}; targets -1 are left out."""

    def __init__(self, name="masked_bce", **kwargs):
        super().__init__(name=name, reduction="sum", **kwargs)

    def call(self, y_true, y_pred):
        y_true = tf.reshape(tf.cast(y_true, tf.float32), [-1, 1])
        loss = keras.losses.binary_crossentropy(tf.maximum(y_true, 0.0), tf.reshape(y_pred, [-1, 1]))
        return _valid_mean(tf.reshape(loss, [-1]), tf.reshape(y_true, [-1]) >= 0)


def losses(config, outputs):
    """(loss dict, loss_weights dict) for model.compile: the diagnosis plus every criteria output."""
    weight = float(config.CRITERIA_WEIGHT) / max(len(outputs), 1)
    loss = {DIAGNOSIS: MaskedSparseCrossEntropy(name="diagnosis")}
    weights = {DIAGNOSIS: 1.0}
    for out in outputs:
        loss[key(out)] = MaskedBinaryCrossEntropy(name=out.name) if out.binary else \
            MaskedSparseCrossEntropy(name=out.name)
        weights[key(out)] = weight
    return loss, weights


def item_targets(items, outputs):
    """int32 [N, len(outputs)]: each item's criteria encoded (skinlesion.criteria.targets), -1 unknown."""
    rows = [crit.targets(getattr(item, "criteria", None), outputs) for item in items]
    return np.stack(rows) if rows else np.zeros((0, len(outputs)), np.int32)


def batch_targets(labels, targets, outputs):
    """The y dict of one training batch: diagnosis labels int [B] and each output's column of targets [B, n]."""
    y = {DIAGNOSIS: np.asarray(labels)}
    for column, out in enumerate(outputs):
        y[key(out)] = targets[:, column]
    return y


def split_prediction(prediction, outputs):
    """(diagnosis probabilities [B, K], {output name: probabilities [B, units]}) of a model's output.

    prediction: the model's output, an array [B, K] without criteria or the
    dict of ``add_heads`` and "class_probs".
    """
    if not isinstance(prediction, dict):
        return np.asarray(prediction), {}
    return (np.asarray(prediction[DIAGNOSIS]),
            {out.name: np.asarray(prediction[key(out)]) for out in outputs})


def present_probabilities(probs, outputs):
    """{output name: P(present / abnormal) float [N]} of split_prediction's criteria dict."""
    by_name = {out.name: out for out in outputs}
    return {name: crit.present_probability(by_name[name], value) for name, value in probs.items()}


def abnormal_truth(targets, output):
    """bool [N] "present / abnormal" of an output's targets int [N] (-1 rows are the caller's to drop)."""
    if output.binary:
        return targets == 1
    if output.criterion == "asymmetry":
        return targets > 0
    return targets == output.levels.index("atypical")


def score_criteria(targets, probs, outputs, resamples=1000, seed=0):
    """AUC of every criteria output on the images where it is known, with a bootstrap interval.

    targets: int [N, n] (item_targets); probs: {output name: [N, units]}.
    The AUC ranks P(present / abnormal) (skinlesion.criteria.present_probability)
    against the known value; multi-level outputs also get one-vs-rest AUCs
    per level. Returns {output name: {"images", "positives", "auc",
    "interval" [low, high] (95 %, percentile bootstrap), "auc_per_level"}}.
    """
    rng = np.random.default_rng(seed)
    result = {}
    for column, out in enumerate(outputs):
        known = targets[:, column] >= 0
        truth = abnormal_truth(targets[known, column], out)
        score = crit.present_probability(out, probs[out.name][known])
        auc, interval = bootstrap_auc(truth, score, resamples, rng=rng)
        entry = {"images": int(known.sum()), "positives": int(truth.sum()), "auc": auc, "interval": interval}
        if not out.binary:
            level_probs = probs[out.name][known]
            entry["auc_per_level"] = {str(level): _auc(targets[known, column] == i, level_probs[:, i])
                                      for i, level in enumerate(out.levels)}
        result[out.name] = entry
    return result


def criteria_record(probs, outputs):
    """What predictions.json says about one image's criteria, and the 7-point readout.

    probs: {output name: float [units]} of one image. Returns {"criteria":
    {output name: {"probability": P(present) or "probabilities": {level: p},
    "predicted": value}}, "seven_point": skinlesion.criteria.seven_point}.
    """
    record, present = {}, {}
    for out in outputs:
        p = np.asarray(probs[out.name], np.float64).reshape(-1)
        if out.binary:
            record[out.name] = {"probability": round(float(p[0]), 6), "predicted": bool(p[0] >= 0.5)}
        else:
            record[out.name] = {"probabilities": {str(level): round(float(v), 6) for level, v in zip(out.levels, p)},
                                "predicted": out.levels[int(np.argmax(p))]}
            if isinstance(out.levels[0], (int, np.integer)):
                record[out.name]["predicted"] = int(record[out.name]["predicted"])
        present[out.name] = float(crit.present_probability(out, p))
    readout = crit.seven_point(probabilities=present) if SEVEN_POINT_NAMES & set(present) else None
    return {"criteria": record, "seven_point": readout}


def write_criteria_csv(path, names, probs, outputs):
    """criteria.csv: column ``image``, then P(present / abnormal) per output, then the 7-point score.

    names: N image names; probs: {output name: float [N, units]}.
    """
    present = present_probabilities(probs, outputs)
    with_score = bool(SEVEN_POINT_NAMES & {out.name for out in outputs})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image"] + [out.name for out in outputs] + (["seven_point_score"] if with_score else []))
        for row, name in enumerate(names):
            values = {out.name: float(present[out.name][row]) for out in outputs}
            line = [name] + [f"{values[out.name]:.6f}" for out in outputs]
            if with_score:
                line.append(f"{crit.seven_point(probabilities=values)['score']:.4f}")
            writer.writerow(line)
