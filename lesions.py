#!/usr/bin/env python3
"""Skin-lesion detection, segmentation and classification with Mask R-CNN.

    python lesions.py --mode train [--dataset DIR] [--classes SCHEME] [--weights coco|imagenet|last|none|PATH]
                                   [--logs DIR] [--epochs-heads N] [--epochs-all N] [--config KEY=VALUE ...]
    python lesions.py --mode predict --image FILE|DIR|GLOB [--weights ...] [--out DIR]
    python lesions.py --mode investigate [--dataset DIR] [--weights ...] [--out DIR]
    python lesions.py --mode evaluate [--dataset DIR] [--subset val|test] [--weights ...] [--out DIR]
    python lesions.py --mode evaluate --truth MASK_DIR --predictions MASK_DIR [--out DIR]
    python lesions.py --mode export --weights RUN_OR_CHECKPOINT --out DIR [--format savedmodel|tflite]
                                    [--classifier CLS_RUN]
    python lesions.py --mode train --model classifier --dataset DIR --classes SCHEME [--segmenter RUN] [--minutes M]
    python lesions.py --mode evaluate --model classifier [--weights CLS_RUN] [--dataset DIR] [--subset test]
    python lesions.py --mode predict --image X --weights SEG_RUN --classifier CLS_RUN [--out DIR]

No --dataset means the built-in synthetic dermoscopy set: the offline demo
(192 px, at most 8 epochs of 100 steps or 10 minutes of training). No
--weights in predict / investigate / evaluate means the newest checkpoint
under --logs. Research software, not a medical device.
"""
import argparse
import datetime
import logging
import os
import sys

log = logging.getLogger("lesions")

MODES = ("train", "predict", "investigate", "evaluate", "export")


class UserError(Exception):
    """An error in the user's input: printed as one line, exit status 2."""


# ----------------------------------------------------------------- arguments
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Skin-lesion Mask R-CNN (research software, not a medical device).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    parser.add_argument("--mode", default="train",
                        help="train | predict | investigate | evaluate | export (default: train, the offline demo)")
    parser.add_argument("--dataset", default=None,
                        help="dataset folder (ISIC 2016/2017/2018, HAM10000, PH2 or images/+masks/); "
                             "default: built-in synthetic dermoscopy")
    parser.add_argument("--classes", default=None,
                        help="class scheme: lesion, isic2017, isic2018, binary, ph2, isic2018_attributes "
                             "(ISIC 2018 Task 2 structures); classifier: also melanoma, isic2019 (default: "
                             "lesion, or the scheme the checkpoint was trained with)")
    parser.add_argument("--weights", default=None,
                        help="coco | imagenet | last | none | PATH (train default: none; "
                             "other modes: the newest checkpoint under --logs)")
    parser.add_argument("--logs", default="logs", help="run and checkpoint root (default: logs/)")
    parser.add_argument("--epochs-heads", type=int, default=None,
                        help="stage 1 epochs (heads only; all layers with --weights none; "
                             "default 4, demo 6)")
    parser.add_argument("--epochs-all", type=int, default=None, help="stage 2 epochs (all layers, LR/10; default 1, demo 2)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="train: wall-clock budget; stage 1 stops at its share of it "
                             "(epochs-heads / all epochs), stage 2 at the end; epochs become caps")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="override a Config field, e.g. --config IMAGE_MAX_DIM=512 (repeatable)")
    parser.add_argument("--image", default=None, help="predict: an image file, a folder or a glob")
    parser.add_argument("--out", default=None, help="output folder (default: under --logs)")
    parser.add_argument("--subset", default=None, help="evaluate / investigate: train | val | test")
    parser.add_argument("--truth", default=None, help="evaluate: folder of ground-truth masks")
    parser.add_argument("--predictions", default=None, help="evaluate: folder of predicted masks")
    parser.add_argument("--seed", type=int, default=0, help="split / synthetic seed (default 0)")
    parser.add_argument("--split", default="0.8,0.1,0.1",
                        help="train,val,test fractions for layouts without official splits "
                             "(default 0.8,0.1,0.1; a val of 0 trains without validation), or foldK/N[,VAL] "
                             "for cross-validation: test = fold K of N (0-based, the same N folds for one "
                             "--seed), val = VAL of all images from the other folds (default 0.1)")
    parser.add_argument("--augment", default="default", choices=["default", "strong", "none"],
                        help="training augmentation (default: flips, rotations, colour jitter, lesion "
                             "re-framing to 1-80 %% of the image, device artefacts; strong: more of each)")
    parser.add_argument("--tta", action="store_true",
                        help="predict / evaluate: also run on the two flipped images; the lesion mask "
                             "is the pixel-wise majority, the probabilities the mean (3x the time)")
    parser.add_argument("--refine", action="store_true",
                        help="predict / evaluate: coarse-to-fine; a lesion small in the image is detected "
                             "again in a crop around it (up to 2x the time)")
    parser.add_argument("--format", default="savedmodel", choices=["savedmodel", "tflite"],
                        help="export: a TensorFlow SavedModel in --out (default), or also --out/model.tflite")
    parser.add_argument("--quiet", action="store_true", help="less console output")
    parser.add_argument("--model", default="maskrcnn", choices=["maskrcnn", "classifier"],
                        help="train / evaluate: the Mask R-CNN (default) or the second-stage lesion classifier")
    parser.add_argument("--segmenter", help="--model classifier: Mask R-CNN run for lesion crops (default: centre)")
    parser.add_argument("--classifier", help="predict: a classifier run; probabilities.csv holds its probabilities "
                                                 "(investigate: adds its criteria and Grad-CAM section; "
                                                 "export: also written as a SavedModel in --out/classifier)")
    return parser.parse_args(argv)


# -------------------------------------------------------------------- config
def make_config(args, mode, saved=None):
    """LesionConfig for the mode (skinlesion.runs.lesion_config): the saved run, the demo, --config."""
    from skinlesion import LesionConfig
    from skinlesion.runs import lesion_config
    overrides = LesionConfig.parse_overrides(args.config)
    demo = mode == "train" and not args.dataset
    return lesion_config(mode, args.classes, saved, overrides, weights=args.weights, demo=demo)


# ------------------------------------------------------------------ datasets
def load_dataset(args, subset, scheme, config=None):
    """(prepared LesionDataset or None, summary) for --dataset / --split / --seed (skinlesion.runs.load_subset)."""
    from skinlesion.runs import load_subset
    try:
        return load_subset(args.dataset, subset, scheme, args.seed, args.split, config)
    except ValueError as err:
        raise UserError(str(err)) from err


# ------------------------------------------------------------------- weights
def resolve_weights(args, default):
    """The weights argument -> ("none"|"coco"|"imagenet"|"last"|"path", path or None)."""
    choice = args.weights or default
    if choice in ("none", "coco", "imagenet", "last"):
        return choice, None
    if not os.path.exists(choice):
        raise UserError(f"--weights {choice}: no such file (use coco, imagenet, last, none or a path)")
    return "path", choice


def find_last_checkpoint(logs, name=None):
    """Newest checkpoint under logs (mrcnn.runs), or UserError saying how to get one.

    name: the config NAME to look for; None takes runs of any NAME (the newest
    wins), so ``--weights last`` finds a run trained with ``--config NAME=...``.
    """
    from mrcnn.runs import find_last_checkpoint as find_last
    try:
        return find_last(logs, name)
    except FileNotFoundError as err:
        raise UserError(str(err)) from err


def name_override(args):
    """The NAME given with --config NAME=..., or None."""
    from skinlesion.config import LesionConfig
    return LesionConfig.parse_overrides(args.config).get("NAME")


# ------------------------------------------------------------------- train
def cmd_train(args):
    if args.model == "classifier":
        return cmd_classifier(args)
    from mrcnn import runs
    from skinlesion.runs import train_run
    weights_kind, weights_path = resolve_weights(args, "none")
    saved = {}
    if weights_kind == "last":
        weights_path = find_last_checkpoint(args.logs, name_override(args))
        saved = runs.run_config_of(weights_path)
    config = make_config(args, "train", saved)
    train_set, train_summary = load_dataset(args, "train", config.CLASS_SCHEME, config)
    val_set, _ = load_dataset(args, "val", config.CLASS_SCHEME, config)
    if val_set is None:
        log.info("--split %s: no validation subset; training without validation losses", args.split)
    if train_summary["images"] == 0:
        raise UserError(f"--dataset {args.dataset}: no usable training image")
    holder = {}
    try:
        model = train_run(config, train_set, val_set, args.logs, weights_kind, weights_path, saved,
                          args.epochs_heads, args.epochs_all, args.minutes, args.augment,
                          demo=not args.dataset, on_model=holder.setdefault, seed=args.seed)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the epoch in progress was saved in {holder['model'].log_dir}; "
              f"resume with --weights last", file=sys.stderr)
        return 130
    except (FloatingPointError, RuntimeError, ValueError) as err:
        raise UserError(str(err)) from err
    from mrcnn import distribute
    if not distribute.is_chief():
        print(f"trained: worker {distribute.task_index()} of {distribute.num_workers()}; "
              f"the chief (worker 0) wrote the run {os.path.basename(model.log_dir)}")
        return 0
    last = find_last_checkpoint(args.logs, config.NAME)
    print(f"trained: run {model.log_dir}\n  checkpoint {last}\n  losses {os.path.join(model.log_dir, 'losses.csv')}")
    return 0


# ----------------------------------------------------------------- inference
def inference_model(args):
    """(MaskRCNN inference model with weights, config, weights path) for --weights.

    A run's checkpoint loads through skinlesion.runs.load_model: the graph
    keeps every scored detection and skinlesion.inference applies the
    threshold, so the best detection can still be used (flagged) when none passes.
    """
    from skinlesion import LesionConfig
    from skinlesion.runs import inference_model_for, load_model
    weights_kind, weights_path = resolve_weights(args, "last")
    try:
        if weights_kind in ("coco", "imagenet", "none"):
            config = make_config(args, "inference")
            return inference_model_for(config, weights_kind, None, args.logs), config, None
        if weights_kind == "last":
            weights_path = find_last_checkpoint(args.logs, name_override(args))
        return load_model(weights_path, args.classes, args.logs, **LesionConfig.parse_overrides(args.config))
    except (FileNotFoundError, RuntimeError) as err:
        raise UserError(str(err)) from err


def default_out(args, kind):
    return args.out or os.path.join(args.logs, kind, datetime.datetime.now().strftime("%Y%m%dT%H%M%S"))


def cmd_predict(args):
    from skinlesion import schemes
    from skinlesion.inference import Predictor, list_images
    if not args.image:
        raise UserError("--mode predict needs --image FILE|DIR|GLOB")
    try:
        paths = list_images(args.image)
    except FileNotFoundError as err:
        raise UserError(str(err)) from err
    model, config, weights_path = inference_model(args)
    out = default_out(args, "predictions")
    from skinlesion.classifier_cli import PredictStage
    stage = PredictStage.of(args.classifier)
    hooks = [stage.on_result] if stage else []
    if schemes.is_attribute_scheme(config.CLASS_SCHEME):   # ISIC 2018 Task 2 files, ready to score or submit
        from skinlesion.attribute_masks import write_attribute_predictions
        hooks.append(lambda source, result, mask, record: write_attribute_predictions(
            os.path.join(out, "attributes"), record["stem"], result, config.CLASS_NAMES))
    predictor = Predictor(model, config.CLASS_NAMES, out, config.DETECTION_MIN_CONFIDENCE, tta=args.tta,
                          refine=args.refine, on_result=hooks)
    outcome = predictor.run(Predictor.file_sources(paths), progress=not args.quiet)
    predictor.write_summary(outcome, {"weights": weights_path, **(stage.summary() if stage else {})})
    if stage:
        stage.write(out, outcome)
    low = sum(r["low_confidence"] for r in outcome["images"])
    print(f"predicted {len(outcome['images'])} images ({len(outcome['skipped'])} skipped, {low} low confidence)"
          f"\n  outputs: {out}/masks, {out}/overlays, {out}/predictions.json, {out}/probabilities.csv")
    return 0


def cmd_evaluate(args):
    if args.model == "classifier":
        return cmd_classifier(args)
    from skinlesion.evaluation import score_mask_folders, write_metrics
    out = default_out(args, "evaluation")
    os.makedirs(out, exist_ok=True)
    if args.truth or args.predictions:
        try:
            metrics, per_image = score_mask_folders(args.truth, args.predictions)
        except ValueError as err:
            raise UserError(str(err)) from err
        write_metrics(out, metrics, per_image)
        return 0
    from skinlesion.evaluation import evaluate_model
    model, config, weights_path = inference_model(args)
    subset = args.subset or "test"
    dataset, summary = load_dataset(args, subset, config.CLASS_SCHEME, config)
    if summary["images"] == 0:
        raise UserError(f"--dataset {args.dataset} --subset {subset}: no usable image")
    metrics, per_image = evaluate_model(model, config, dataset, out, progress=not args.quiet, tta=args.tta,
                                        refine=args.refine)
    metrics.update({"weights": weights_path, "dataset": summary.get("root") or "synthetic",
                    "layout": summary["layout"], "subset": subset, "dataset_skipped": summary.get("skipped", [])})
    write_metrics(out, metrics, per_image)
    return 0


def cmd_investigate(args):
    from skinlesion.report import investigate
    model, config, weights_path = None, None, None
    try:
        model, config, weights_path = inference_model(args)
    except UserError as err:
        if args.weights:
            raise
        log.info("no model for the report (%s): data and anchors sections only", err)
        config = make_config(args, "inference")
    subset = args.subset or "val"
    dataset, summary = load_dataset(args, subset, config.CLASS_SCHEME, config)
    summaries = {subset: summary}
    for other in ("train", "val", "test"):
        if other != subset:
            try:
                summaries[other] = load_dataset(args, other, config.CLASS_SCHEME, config)[1]
            except UserError as err:
                log.info("subset %s: %s", other, err)
    out = default_out(args, "investigate")
    classifier = None
    if args.classifier:
        from skinlesion.classifier_cli import PredictStage
        classifier = PredictStage.of(args.classifier).run
    result = investigate(dataset, out, config, model=model, subset_summaries=summaries, classifier=classifier)
    print(f"report: {os.path.join(out, 'index.html')} (open it in a browser)\n"
          f"summary: {os.path.join(out, 'summary.json')}")
    return 0 if result is not None else 1


def cmd_export(args):
    from skinlesion import LesionConfig
    from skinlesion.runs import export_run
    if not args.out:
        raise UserError("--mode export needs --out DIR (the SavedModel folder to write)")
    weights = args.weights
    if weights in (None, "last"):
        weights = find_last_checkpoint(args.logs, name_override(args))
    try:
        classifier_run = None
        if args.classifier:  # found before anything is written: a wrong path fails at once
            from skinlesion.classifier_train import find_classifier_run
            classifier_run = find_classifier_run(args.classifier)
        written, checkpoint = export_run(weights, args.out, args.format, LesionConfig.parse_overrides(args.config))
        if classifier_run:
            from skinlesion.export_classifier import export_classifier
            written += export_classifier(classifier_run, os.path.join(args.out, "classifier"))[:1]
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        raise UserError(str(err)) from err
    print(f"exported {checkpoint}\n  to {args.out} ({args.format}): "
          + ", ".join(os.path.relpath(p, args.out) for p in written))
    return 0


def cmd_classifier(args):
    """--model classifier: train / evaluate the second-stage classifier (skinlesion.classifier_cli)."""
    from skinlesion.classifier_cli import run_command
    print("\n".join(run_command(args.mode, args)))
    return 0


# ---------------------------------------------------------------------- main
def start_workers():
    """Create the multi-worker strategy when TF_CONFIG names several workers, before any TensorFlow op.

    Returns None, or an error message (printed) when TF_CONFIG cannot be used.
    """
    from mrcnn import distribute
    try:
        if distribute.is_multi_worker():
            distribute.multi_worker_strategy()
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return str(err)
    return None


def main(argv=None):
    args = parse_args(argv)
    # Before anything imports TensorFlow: oneDNN per mode, the allocator (mrcnn.runtime).
    from mrcnn import runtime
    runtime.configure(args.mode)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    if args.mode == "train" and args.model == "maskrcnn" and start_workers() is not None:
        return 2
    if args.mode not in MODES:
        print(f"error: --mode {args.mode!r} is not a mode; use one of {', '.join(MODES)}", file=sys.stderr)
        return 2
    commands = {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate,
                "investigate": cmd_investigate, "export": cmd_export}
    try:
        from mrcnn.config import ConfigError
        from skinlesion import DatasetError, SchemeError
        try:
            return commands[args.mode](args)
        except (DatasetError, SchemeError, ConfigError) as err:
            raise UserError(str(err)) from err
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
