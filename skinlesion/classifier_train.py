"""Training, saved runs and scoring of the second-stage classifier.

    from skinlesion.classifier import ClassifierConfig
    from skinlesion.classifier_data import CropCache, synthetic_items
    from skinlesion.classifier_train import train_classifier, load_classifier_run
    run_dir = train_classifier(config, train_items, val_items, "logs")
    run = load_classifier_run(run_dir)
    probs = run.probabilities(crops, masks)

A run is ``LOGS/classifier<YYYYmmddTHHMMSS>/`` with config.json (the
ClassifierConfig fields and CLASS_NAMES), classifier_best.weights.h5 (best
validation MONITOR), classifier_last.weights.h5, losses.csv and
calibration.json (temperature, ECE and NLL before and after, on the
validation split).
"""
import csv
import datetime
import json
import logging
import math
import os
import time

import weakref

import keras
import numpy as np
import tensorflow as tf

from mrcnn.training import build_optimizer
from skinlesion import scoring
from skinlesion.classifier import ClassifierConfig, build_classifier, model_inputs
from skinlesion.classifier_data import CropCache, CropSequence
from skinlesion.classifier_metrics import (apply_temperature, bootstrap_intervals, calibration_report, ece,
                                           fit_temperature, nll)

log = logging.getLogger(__name__)

BEST, LAST = "classifier_best.weights.h5", "classifier_last.weights.h5"
RUN_PREFIX = "classifier"


# One compiled inference function per model: eager calls of a ResNet-50 cost several times
# more per batch, and relaxed shapes keep a last, smaller batch from tracing again.
_PREDICT_FUNCTIONS = weakref.WeakKeyDictionary()


def _forward(model, x):
    """model(x, training=False) through a tf.function made once per model.

    Returns numpy [B, K], or a dict of numpy arrays for a model with criteria outputs.
    """
    function = _PREDICT_FUNCTIONS.get(model)
    if function is None:
        function = _PREDICT_FUNCTIONS[model] = tf.function(lambda inputs: model(inputs, training=False),
                                                           reduce_retracing=True)
    result = function(x)
    return {k: v.numpy() for k, v in result.items()} if isinstance(result, dict) else result.numpy()


def predict_all(model, config, crops, masks, tta=False):
    """(diagnosis probabilities float [N, K], {criteria output: float [N, units]}) of a batch.

    crops: uint8 [N, S, S, 3]; masks: float [N, S, S]. tta: also the
    left-right and top-bottom flips; the diagnosis log-probabilities are
    averaged (then renormalised), so temperature scaling applies to the
    result as to one model's output; criteria probabilities are averaged.
    The criteria dict is empty for a model without CRITERIA.
    """
    from skinlesion.classifier_criteria import outputs_of, split_prediction
    from skinlesion.classifier_metrics import log_probabilities, softmax
    outputs = outputs_of(config)
    flips = [lambda a: a] + ([lambda a: a[:, :, ::-1], lambda a: a[:, ::-1]] if tta else [])
    logs, criteria = [], []
    for flip in flips:
        x = model_inputs(config, np.ascontiguousarray(flip(crops)), np.ascontiguousarray(flip(masks)))
        diagnosis, found = split_prediction(_forward(model, x), outputs)
        logs.append(log_probabilities(diagnosis))
        criteria.append(found)
    return softmax(np.mean(logs, axis=0)), {name: np.mean([c[name] for c in criteria], axis=0)
                                           for name in criteria[0]}


def predict_probabilities(model, config, crops, masks, tta=False):
    """Softmax probabilities float [N, K] of crops uint8 [N, S, S, 3] and masks float [N, S, S] (predict_all)."""
    return predict_all(model, config, crops, masks, tta)[0]


def predict_items_all(model, config, cache, items, tta=False, batch=32):
    """predict_all over a list of items, their crops read through ``cache``: ([N, K], {output: [N, units]})."""
    from skinlesion.classifier_criteria import DIAGNOSIS, key, outputs_of
    probs, criteria = [], []
    for start in range(0, len(items), batch):
        crops, masks = cache.batch(items[start:start + batch])
        diagnosis, found = predict_all(model, config, crops, masks, tta)
        probs.append(diagnosis)
        criteria.append(found)
    if not probs:
        shapes = model.output_shape if isinstance(model.output_shape, dict) else {DIAGNOSIS: model.output_shape}
        return (np.zeros((0, shapes[DIAGNOSIS][-1])),
                {out.name: np.zeros((0, out.units)) for out in outputs_of(config) if key(out) in shapes})
    return np.concatenate(probs), {name: np.concatenate([c[name] for c in criteria]) for name in criteria[0]}


def predict_items(model, config, cache, items, tta=False, batch=32):
    """Diagnosis probabilities float [N, K] of a list of items, their crops read through ``cache``."""
    return predict_items_all(model, config, cache, items, tta, batch)[0]


def epoch_scores(truth, probs, class_names):
    """{"balanced_accuracy", "auc" (mean over classes with both kinds), "nll"} of probs [N, K]."""
    result = scoring.score_classification(np.asarray(truth), probs, class_names)
    return {"balanced_accuracy": result["balanced_accuracy"], "auc": result["mean_auc"], "nll": nll(truth, probs)}


class ValidationScore(keras.callbacks.Callback):
    """Scores the validation items after each epoch, keeps the best checkpoint, stops after PATIENCE.

    Adds val_balanced_accuracy, val_auc and val_loss (NLL) to the epoch's
    logs (so losses.csv has them) and saves the weights to run_dir/BEST
    when config.MONITOR improves, and to run_dir/LAST every epoch.
    """

    def __init__(self, config, cache, items, class_names, run_dir):
        super().__init__()
        self.config, self.cache, self.items, self.class_names = config, cache, items, class_names
        self.truth = np.array([item.label for item in items])
        self.run_dir = run_dir
        self.best, self.best_nll, self.best_epoch, self.waited = -math.inf, math.inf, None, 0
        from skinlesion.classifier_criteria import item_targets, outputs_of
        self.outputs = outputs_of(config)
        self.targets = item_targets(items, self.outputs)
        # Training throughput without the validation passes: steps taken and seconds spent validating.
        self.steps, self.validation_seconds = 0, 0.0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def save(self, name):
        from mrcnn.callbacks import variables_to_numpy_quietly
        with variables_to_numpy_quietly():
            self.model.save_weights(os.path.join(self.run_dir, name))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        self.save(LAST)
        if not self.items:
            self.save(BEST)
            self.best_epoch = epoch + 1
            return
        started = time.monotonic()
        probs, criteria = predict_items_all(self.model, self.config, self.cache, self.items)
        scores = epoch_scores(self.truth, probs, self.class_names)
        if self.outputs:
            scores["criteria_auc"] = mean_criteria_auc(self.targets, criteria, self.outputs)
            parts = [scores["balanced_accuracy"], scores["criteria_auc"]]
            scores["combined"] = None if None in parts else float(np.mean(parts))
        self.validation_seconds += time.monotonic() - started
        logs.update({f"val_{k}": (np.nan if v is None else v) for k, v in scores.items()})
        logs["val_loss"] = logs.pop("val_nll")
        value = scores[self.config.monitor()]
        value = -math.inf if value is None or not np.isfinite(value) else value
        # A tie (a score that has saturated, such as a balanced accuracy of 1) goes to the lower NLL.
        tie = value == self.best and scores["nll"] < self.best_nll
        if value > self.best or tie or self.best_epoch is None:
            self.best, self.best_nll, self.best_epoch, self.waited = value, scores["nll"], epoch + 1, 0
            self.save(BEST)
        else:
            self.waited += 1
            if self.config.PATIENCE and self.waited >= int(self.config.PATIENCE):
                log.info("no better validation %s for %d epochs: stopping", self.config.monitor(), self.waited)
                self.model.stop_training = True
        log.info("epoch %d: validation balanced accuracy %.3f, mean AUC %s%s", epoch + 1,
                 scores["balanced_accuracy"], "n/a" if scores["auc"] is None else f"{scores['auc']:.3f}",
                 "" if not self.outputs else ", criteria AUC " + (
                     "n/a" if scores["criteria_auc"] is None else f"{scores['criteria_auc']:.3f}"))


def mean_criteria_auc(targets, probs, outputs):
    """Mean AUC over the criteria outputs that have both kinds of known values (None when none has)."""
    from skinlesion.classifier_criteria import score_criteria
    aucs = [entry["auc"] for entry in score_criteria(targets, probs, outputs, resamples=0).values()
            if entry["auc"] is not None]
    return float(np.mean(aucs)) if aucs else None


def new_run_dir(logs):
    """Create LOGS/classifier<YYYYmmddTHHMMSS>/ (a second later if that name is taken); return its path."""
    stamp = datetime.datetime.now()
    while True:
        path = os.path.join(logs, RUN_PREFIX + stamp.strftime("%Y%m%dT%H%M%S"))
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            stamp += datetime.timedelta(seconds=1)


def write_config(run_dir, config):
    """run_dir/config.json: the config's fields and the scheme's CLASS_NAMES."""
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({**config.to_dict(), "CLASS_NAMES": config.class_names()}, f, indent=2, sort_keys=True)


def train_classifier(config, train_items, val_items, logs, segmenter=None, cache_root=None, progress=False):
    """Train the classifier into a new run folder under ``logs``; returns the run folder.

    train_items / val_items: lists of ClassifierItem (skinlesion.classifier_data);
    val_items may be empty (no best-epoch choice, no calibration). segmenter:
    a Segmenter (or anything with .key and .lesion_mask(image)) whose
    masks give the crops; None crops the centred square and says so.
    cache_root: crop cache folder (default logs/crop_cache). Crops are made
    before training; config.MINUTES bounds the training itself.
    """
    from mrcnn.callbacks import TimeBudget
    class_names = config.class_names()
    if segmenter is None:
        log.warning("no segmenter given: the classifier sees the whole image (centre crop), not a lesion crop")
    else:
        config.SEGMENTER = os.path.abspath(segmenter.checkpoint) if hasattr(segmenter, "checkpoint") else str(segmenter.key)
    os.makedirs(logs, exist_ok=True)
    cache = CropCache(cache_root or os.path.join(logs, "crop_cache"), segmenter, config.CROP_MARGIN, config.IMAGE_SIZE)
    train_items, skipped = cache.fill(train_items, progress)
    val_items, val_skipped = cache.fill(val_items, progress)
    if not train_items:
        raise ValueError("no usable training image for the classifier (every image was skipped)")
    log.info("crops: %d made, %d reused from %s", cache.computed, cache.reused, cache.folder)
    run_dir = new_run_dir(logs)
    write_config(run_dir, config)
    keras.utils.set_random_seed(int(config.SEED))
    model = build_classifier(config, len(class_names))
    sequence = CropSequence(config, cache, train_items, len(class_names), seed=config.SEED)
    schedule = keras.optimizers.schedules.CosineDecay(float(config.LEARNING_RATE),
                                                      int(config.EPOCHS) * len(sequence), alpha=0.01)
    loss, loss_weights, weighted_metrics = keras.losses.SparseCategoricalCrossentropy(), None, []
    if sequence.outputs:
        from skinlesion.classifier_criteria import losses
        loss, loss_weights = losses(config, sequence.outputs)
        weighted_metrics = None
        known = (sequence.targets >= 0).sum(axis=0)
        log.info("criteria head: %s", ", ".join(f"{o.name} ({n} known)" for o, n in zip(sequence.outputs, known)))
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=float(config.WEIGHT_DECAY)),
                  loss=loss, loss_weights=loss_weights, weighted_metrics=weighted_metrics)
    build_optimizer(model.optimizer, model.trainable_variables)
    validation = ValidationScore(config, cache, val_items, class_names, run_dir)
    callbacks = [validation, keras.callbacks.CSVLogger(os.path.join(run_dir, "losses.csv"))]
    if float(config.MINUTES) > 0:
        callbacks.insert(0, TimeBudget(time.monotonic() + 60.0 * float(config.MINUTES)))
    started = time.monotonic()
    history = model.fit(sequence, epochs=int(config.EPOCHS), callbacks=callbacks, verbose=1 if progress else 0)
    seconds = time.monotonic() - started - validation.validation_seconds
    epochs = len(history.history.get("loss", []))
    model.load_weights(os.path.join(run_dir, BEST))
    calibration = calibrate(model, config, cache, val_items)
    # train_seconds and images_per_second leave out the validation passes (crops were made before).
    calibration.update({"best_epoch": validation.best_epoch, "epochs": epochs, "train_seconds": round(seconds, 2),
                        "images_per_second": round(validation.steps * config.BATCH_SIZE / max(seconds, 1e-9), 2),
                        "train_images": len(train_items), "val_images": len(val_items),
                        "skipped": skipped + val_skipped,
                        "crop": "lesion (segmenter)" if segmenter is not None else "centre (no segmenter)"})
    with open(os.path.join(run_dir, "calibration.json"), "w") as f:
        json.dump(calibration, f, indent=1)
    return run_dir


def calibrate(model, config, cache, val_items):
    """Fit the temperature on the validation items (as predicted, with TTA when config.TTA).

    Returns calibration_report's dict plus "tta"; temperature 1 and a note
    without validation images or with CALIBRATE off.
    """
    if not val_items or not config.CALIBRATE:
        return {"temperature": 1.0, "tta": bool(config.TTA),
                "note": "not calibrated: " + ("CALIBRATE is off" if val_items else "no validation images")}
    truth = np.array([item.label for item in val_items])
    probs = predict_items(model, config, cache, val_items, tta=bool(config.TTA))
    report = calibration_report(truth, probs, fit_temperature(truth, probs))
    log.info("calibration on %d validation images: temperature %.3f, ECE %.4f -> %.4f", len(truth),
             report["temperature"], report["ece_before"], report["ece_after"])
    return {**report, "tta": bool(config.TTA)}


# ---------------------------------------------------------------------- runs
def find_classifier_run(path):
    """The classifier run meant by ``path``: a run folder, a file in it, or a logs folder (its newest run).

    Raises FileNotFoundError naming the path and what it should hold.
    """
    folder = os.path.dirname(os.path.abspath(path)) if os.path.isfile(path) else path
    if os.path.isfile(os.path.join(folder, BEST)):
        return folder
    runs = sorted(d for d in os.listdir(folder) if d.startswith(RUN_PREFIX) and
                  os.path.isfile(os.path.join(folder, d, BEST))) if os.path.isdir(folder) else []
    if runs:
        return os.path.join(folder, runs[-1])
    raise FileNotFoundError(f"{path}: no classifier run (a folder classifier<timestamp>/ with {BEST}, or a "
                            "logs folder holding one); train one with --mode train --model classifier")


class ClassifierRun:
    """A trained classifier ready to predict: model, config, class names, temperature."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        with open(os.path.join(run_dir, "config.json")) as f:
            saved = json.load(f)
        self.config = ClassifierConfig.from_dict(saved, WEIGHTS="none")
        self.class_names = list(saved.get("CLASS_NAMES") or self.config.class_names())
        calibration_path = os.path.join(run_dir, "calibration.json")
        calibration = json.load(open(calibration_path)) if os.path.exists(calibration_path) else {}
        self.temperature = float(calibration.get("temperature", 1.0))
        self.model = build_classifier(self.config, len(self.class_names))
        self.model.load_weights(os.path.join(run_dir, BEST))
        from skinlesion.classifier_criteria import outputs_of
        self.outputs = outputs_of(self.config)

    def predict(self, crops, masks):
        """(calibrated probabilities float [N, K], {criteria output: float [N, units]}) of crops and masks.

        crops: uint8 [N, S, S, 3]; masks: float [N, S, S]. The dict is empty
        for a run trained without CRITERIA.
        """
        probs, criteria = predict_all(self.model, self.config, crops, masks, tta=bool(self.config.TTA))
        return apply_temperature(probs, self.temperature), criteria

    def probabilities(self, crops, masks):
        """Calibrated probabilities float [N, K] of crops uint8 [N, S, S, 3], masks float [N, S, S]."""
        return self.predict(crops, masks)[0]

    def summary(self):
        """What predictions.json records about the classifier."""
        return {"run": os.path.abspath(self.run_dir), "class_names": self.class_names,
                "temperature": self.temperature, "segmenter": self.config.SEGMENTER or None,
                "backbone": self.config.BACKBONE, "mask_mode": self.config.MASK_MODE,
                "criteria": [out.name for out in self.outputs]}


def load_classifier_run(path):
    """ClassifierRun of a run folder, a file in it or a logs folder (find_classifier_run)."""
    return ClassifierRun(find_classifier_run(path))


def write_probability_csv(path, names, class_names, probs):
    """An ISIC Task 3 style table: column ``image`` then one per class; probs float [N, K]."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image"] + list(class_names))
        for name, row in zip(names, probs):
            writer.writerow([name] + [f"{p:.6f}" for p in row])


def evaluate_classifier(run, items, cache, out, resamples=1000, seed=0):
    """Score a run on labelled items; writes OUT/metrics.json, probabilities.csv and per_image.csv.

    Returns the metrics dict: {"classification": skinlesion.scoring's
    score_classification, "intervals": bootstrap_intervals (95 %),
    "calibration": {"ece", "nll", "temperature"}, "images", "run"}; a run
    with CRITERIA adds "criteria" (classifier_criteria.score_criteria: AUC
    per criterion on the images where it is known) and writes OUT/criteria.csv.
    """
    os.makedirs(out, exist_ok=True)
    items, skipped = cache.fill(items)
    truth = np.array([item.label for item in items])
    probs, criteria = predict_items_all(run.model, run.config, cache, items, tta=bool(run.config.TTA))
    probs = apply_temperature(probs, run.temperature)
    metrics = {"classification": scoring.score_classification(truth, probs, run.class_names),
               "intervals": bootstrap_intervals(truth, probs, run.class_names, resamples, seed=seed),
               "calibration": {"ece": ece(truth, probs), "nll": nll(truth, probs), "temperature": run.temperature},
               "images": len(items), "skipped": skipped, "run": os.path.abspath(run.run_dir)}
    names = [item.name or item.image_id for item in items]
    if run.outputs:
        from skinlesion.classifier_criteria import item_targets, score_criteria, write_criteria_csv
        metrics["criteria"] = score_criteria(item_targets(items, run.outputs), criteria, run.outputs,
                                             resamples, seed)
        write_criteria_csv(os.path.join(out, "criteria.csv"), names, criteria, run.outputs)
    write_probability_csv(os.path.join(out, "probabilities.csv"), names, run.class_names, probs)
    with open(os.path.join(out, "per_image.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "truth", "predicted", "confidence"])
        for name, label, row in zip(names, truth, probs):
            writer.writerow([name, run.class_names[label], run.class_names[int(np.argmax(row))], f"{row.max():.6f}"])
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1, default=float)
    return metrics
