"""What ``lesions.py --model classifier`` and ``--classifier CLS_RUN`` do, as library calls.

    lesions.py --mode train --model classifier --dataset DIR --classes SCHEME
               [--segmenter RUN_OR_CHECKPOINT] [--minutes M] [--logs DIR]
    lesions.py --mode evaluate --model classifier [--weights CLS_RUN] [--dataset DIR] [--subset test]
    lesions.py --mode predict --image X --weights SEG_RUN --classifier CLS_RUN --out OUT

``run_command`` takes the parsed arguments of lesions.py and returns the
lines to print; ``PredictStage`` adds the classifier's probabilities to the
Mask R-CNN's predict outputs.
"""
import datetime
import logging
import os

import numpy as np

from mrcnn.config import ConfigError
from skinlesion import splits
from skinlesion.classifier import ClassifierConfig, lesion_crop
from skinlesion.classifier_data import CropCache, Segmenter, load_items
from skinlesion.classifier_train import evaluate_classifier, load_classifier_run, train_classifier

log = logging.getLogger(__name__)


class ClassifierError(ConfigError):
    """A classifier command cannot run as asked (a missing run, an offline download): one line for the user."""


def classifier_config(args):
    """The ClassifierConfig of a train command: --classes, --weights, --minutes, --seed, then --config."""
    if not args.classes or args.classes == "lesion":
        raise ConfigError("--model classifier needs --classes SCHEME with at least two classes "
                          "(e.g. isic2017, isic2018, binary, ph2)")
    if args.weights not in (None, "none", "imagenet") and not os.path.isfile(args.weights):
        raise ConfigError(f"--weights {args.weights}: with --model classifier use none, imagenet or the path of "
                          "a keras.applications notop .h5 file")
    fields = {"CLASS_SCHEME": args.classes, "WEIGHTS": args.weights or "none", "SEED": int(args.seed)}
    if args.minutes is not None:
        fields["MINUTES"] = float(args.minutes)
    fields.update(ClassifierConfig.parse_overrides(args.config))
    return ClassifierConfig(**fields)


def segmenter_of(path):
    """The Segmenter of --segmenter RUN_OR_CHECKPOINT, or None when no path is given."""
    if not path:
        return None
    segmenter = Segmenter.load(path)
    log.info("segmenter: %s", segmenter.checkpoint)
    return segmenter


def items_of(args, subset, scheme, image_size):
    """(items, summary) of --dataset's subset (synthetic images IMAGE_SIZE px when --dataset is absent)."""
    if args.dataset and not os.path.exists(args.dataset) and not str(args.dataset).startswith("synthetic"):
        raise FileNotFoundError(f"--dataset {args.dataset}: no such folder")
    return load_items(args.dataset, subset, scheme, int(args.seed), splits.parse_split(args.split),
                      size=(image_size, image_size))


def train(args):
    """--mode train --model classifier: returns the lines to print."""
    config = classifier_config(args)
    segmenter = segmenter_of(args.segmenter)
    train_items, summary = items_of(args, "train", config.CLASS_SCHEME, int(config.IMAGE_SIZE))
    split = splits.parse_split(args.split)
    val_items = [] if len(split) == 3 and split[1] == 0 and args.dataset else \
        items_of(args, "val", config.CLASS_SCHEME, int(config.IMAGE_SIZE))[0]
    log.info("classifier: %d training and %d validation images (%s layout)", len(train_items), len(val_items),
             summary.get("layout"))
    run_dir = train_classifier(config, train_items, val_items, args.logs, segmenter, progress=not args.quiet)
    lines = [f"trained classifier: run {run_dir}", f"  checkpoint {os.path.join(run_dir, 'classifier_best.weights.h5')}",
             f"  losses {os.path.join(run_dir, 'losses.csv')}", f"  calibration {os.path.join(run_dir, 'calibration.json')}"]
    if segmenter is None:
        lines.append("  crops: whole image (centre crop); pass --segmenter RUN for lesion crops")
    return lines


def evaluate(args):
    """--mode evaluate --model classifier: score --weights CLS_RUN (default: the newest under --logs)."""
    run = load_classifier_run(args.weights or args.logs)
    recorded = run.config.SEGMENTER
    if not args.segmenter and recorded and not os.path.exists(recorded):
        raise FileNotFoundError(f"{run.run_dir}: its segmenter {recorded} is gone; pass --segmenter RUN")
    segmenter = segmenter_of(args.segmenter or recorded)
    subset = args.subset or "test"
    items, _ = items_of(args, subset, run.config.CLASS_SCHEME, int(run.config.IMAGE_SIZE))
    out = args.out or os.path.join(args.logs, "evaluation", datetime.datetime.now().strftime("%Y%m%dT%H%M%S"))
    cache = CropCache(os.path.join(args.logs, "crop_cache"), segmenter, run.config.CROP_MARGIN,
                      run.config.IMAGE_SIZE)
    metrics = evaluate_classifier(run, items, cache, out, seed=int(args.seed))
    result = metrics["classification"]
    interval = metrics["intervals"]["balanced_accuracy"]
    return [f"classifier on {metrics['images']} {subset} images: balanced accuracy {result['balanced_accuracy']:.3f} "
            f"(95 % interval {interval[0]:.3f}-{interval[1]:.3f}), ECE {metrics['calibration']['ece']:.3f}",
            f"  outputs: {out}/metrics.json, {out}/probabilities.csv, {out}/per_image.csv"]


def run_command(mode, args):
    """Run ``lesions.py --mode MODE --model classifier``; returns the lines to print.

    A missing file or run, or a failed download, raises ClassifierError with the reason.
    """
    try:
        if mode == "train":
            return train(args)
        if mode == "evaluate":
            return evaluate(args)
    except (FileNotFoundError, RuntimeError) as err:
        raise ClassifierError(str(err)) from err
    raise ClassifierError(f"--mode {mode} --model classifier: the classifier trains and evaluates; to predict use "
                      "--mode predict --weights SEG_RUN --classifier CLS_RUN")


class PredictStage:
    """The classifier beside the Mask R-CNN in --mode predict.

    on_result (skinlesion.inference.Predictor's callback) crops each image
    around the lesion mask the Predictor made and adds the classifier's
    probabilities to its predictions.json record ("classifier_probabilities";
    "probabilities" stays the detector head's) and, for a run with CRITERIA,
    "criteria" and "seven_point" (classifier_criteria.criteria_record);
    write() then makes OUT/probabilities.csv the classifier's and writes
    OUT/criteria.csv.
    """

    def __init__(self, path):
        self.run = load_classifier_run(path)
        self.probs, self.criteria = {}, {}

    @classmethod
    def of(cls, path):
        """The stage of --classifier PATH, None without one; ClassifierError when PATH holds no run."""
        if not path:
            return None
        try:
            return cls(path)
        except FileNotFoundError as err:
            raise ClassifierError(f"--classifier {err}") from err

    def on_result(self, source, result, mask, record):
        image = source[2]()
        config = self.run.config
        crop, crop_mask, window, kind = lesion_crop(image, mask, config.CROP_MARGIN, config.IMAGE_SIZE)
        probs, criteria = self.run.predict(crop[None], crop_mask[None])
        probs = probs[0]
        self.probs[record["stem"]] = probs
        record["classifier_probabilities"] = {n: round(float(p), 6) for n, p in zip(self.run.class_names, probs)}
        record["classifier_crop"] = {"window": [int(v) for v in window], "kind": kind}
        if self.run.outputs:
            from skinlesion.classifier_criteria import criteria_record
            one = {name: value[0] for name, value in criteria.items()}
            self.criteria[record["stem"]] = one
            record.update(criteria_record(one, self.run.outputs))

    def summary(self):
        """{"classifier": ...} for predictions.json."""
        return {"classifier": self.run.summary()}

    def write(self, out, outcome):
        """OUT/probabilities.csv from the classifier: image, then the scheme's class names."""
        from skinlesion.classifier_train import write_probability_csv
        stems = [record["stem"] for record in outcome["images"]]
        probs = [self.probs[stem] for stem in stems]
        write_probability_csv(os.path.join(out, "probabilities.csv"), stems, self.run.class_names,
                              np.array(probs).reshape(len(stems), len(self.run.class_names)))
        if self.run.outputs:
            from skinlesion.classifier_criteria import write_criteria_csv
            table = {out_.name: np.array([self.criteria[stem][out_.name] for stem in stems]).reshape(
                len(stems), out_.units) for out_ in self.run.outputs}
            write_criteria_csv(os.path.join(out, "criteria.csv"), stems, table, self.run.outputs)
