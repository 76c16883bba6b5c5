"""Second-stage classifier benchmark (issue 19): whole image vs lesion crop vs crop + mask.

    python bench/classifier.py isic2017 --segmenter logs/lesion2026... --minutes 30   # 4 variants x 3 seeds
    python bench/classifier.py ph2 --minutes 8 --seg-minutes 12                        # 5 folds, beside the Mask R-CNN head
    python bench/classifier.py isic2017 --segmenter RUN --dry-run                      # print the commands only

isic2017: ``../shared/data/ISIC2017_Training_256`` (256x256 copies, a
melanoma column only), melanoma vs rest, three seeds of a grouped 70/10/20
split (``--seed S --split 0.7,0.1,0.2``). Variants: ``whole`` (no segmenter,
centre crop), ``crop`` (MASK_MODE=none), ``channel`` and ``attention``, each
trained by ``lesions.py --mode train --model classifier`` and scored by
``--mode evaluate --model classifier`` (melanoma AUC and balanced accuracy
with bootstrap 95 % intervals). The segmenter run is given (--segmenter), one
for all seeds: it must not have seen these test images (train it on another
dataset, e.g. PH2 or ISIC 2018 Task 1).

ph2: seeded, grouped, stratified k-fold cross-validation (``--folds 5``,
``--split foldK/5``: each fold's 40 test images unseen by both stages, val
0.1 of all images from the other folds). Per fold a Mask R-CNN is trained
(``--classes ph2``, ``--seg-minutes``, ``--seg-config``), its class head
scored (``--mode evaluate``), and the classifier trained on its crops
(MASK_MODE from --mask-mode) and scored on the same test images. Besides the
per-fold rows, the out-of-fold probabilities of all folds are pooled (each
image predicted once, by the models that never saw it) and scored with
bootstrap 95 % intervals: balanced accuracy over the three classes and
melanoma AUC, the head and the classifier side by side. --fold-list runs some
folds only (pooled over those).

Output in --out (default logs/bench_classifier/<dataset>): one folder per
seed and variant (runs, metrics.json), results.json and results.md. Training
time per epoch and images per second come from each run's calibration.json.
Not run by CI.
"""
import argparse
import glob
import json
import os
import subprocess
import sys

if __package__:  # imported as bench.classifier
    from . import common
else:  # run as a script: bench/ is sys.path[0]
    import common

ROOT = common.ROOT
DATASETS = {"isic2017": os.path.join(common.SHARED_DATA, "ISIC2017_Training_256"),
            "ph2": os.path.join(common.SHARED_DATA, "PH2Dataset")}
VARIANTS = {"whole": None, "crop": "none", "channel": "channel", "attention": "attention"}
SPLIT = "0.7,0.1,0.2"


def lesions(*argv):
    return [sys.executable, os.path.join(ROOT, "lesions.py"), *[str(a) for a in argv], "--quiet"]


def run(cmd, dry_run):
    print(" ".join(cmd), flush=True)
    if not dry_run:
        subprocess.run(cmd, check=True, cwd=ROOT)


def newest(pattern):
    found = sorted(glob.glob(pattern))
    return found[-1] if found else None


def read_json(path):
    return json.load(open(path)) if path and os.path.exists(path) else {}


def classifier_row(folder, melanoma):
    """Melanoma AUC / balanced accuracy with intervals and speed from one evaluated classifier folder."""
    metrics = read_json(os.path.join(folder, "eval", "metrics.json"))
    calibration = read_json(os.path.join(newest(os.path.join(folder, "runs", "classifier*")) or "", "calibration.json"))
    classification, intervals = metrics.get("classification", {}), metrics.get("intervals", {})
    epochs = calibration.get("epochs") or 0
    return {"auc": classification.get("auc", {}).get(melanoma), "auc_95": intervals.get("auc", {}).get(melanoma),
            "balanced_accuracy": classification.get("balanced_accuracy"),
            "balanced_accuracy_95": intervals.get("balanced_accuracy"),
            "ece": metrics.get("calibration", {}).get("ece"),
            "seconds_per_epoch": calibration["train_seconds"] / epochs if epochs else None,
            "images_per_second": calibration.get("images_per_second")}


def share_crop_cache(folder, shared):
    """Point folder/runs/crop_cache at one shared cache, so variants with the same segmenter crop each image once."""
    logs = os.path.join(folder, "runs")
    link = os.path.join(logs, "crop_cache")
    os.makedirs(shared, exist_ok=True)
    os.makedirs(logs, exist_ok=True)
    if not os.path.lexists(link):
        os.symlink(os.path.abspath(shared), link)


def classifier_commands(data, classes, folder, seed, minutes, segmenter, mask_mode, extra, split=SPLIT):
    logs = os.path.join(folder, "runs")
    train = ["--mode", "train", "--model", "classifier", "--dataset", data, "--classes", classes,
             "--seed", seed, "--split", split, "--minutes", minutes, "--logs", logs, *extra]
    if segmenter:
        train += ["--segmenter", segmenter, "--config", f"MASK_MODE={mask_mode}"]
    evaluate = ["--mode", "evaluate", "--model", "classifier", "--dataset", data, "--classes", classes,
                "--seed", seed, "--split", split, "--subset", "test", "--logs", logs,
                "--out", os.path.join(folder, "eval")]
    return [lesions(*train), lesions(*evaluate)]


def read_scored(folder):
    """(image names, truth class names, probabilities [N, K], class names) from an evaluation folder.

    folder: a ``--mode evaluate`` output (Mask R-CNN or classifier) holding
    probabilities.csv (image, then one column per class) and per_image.csv
    (image, truth, ...). Images without a truth row are left out.
    """
    import csv
    from skinlesion.scoring_classification import _IMAGE_SUFFIX, read_probability_csv
    with open(os.path.join(folder, "per_image.csv"), newline="") as f:
        truth = {_IMAGE_SUFFIX.sub("", row["image"]): row.get("truth") for row in csv.DictReader(f)}
    names, class_names, values, _ = read_probability_csv(os.path.join(folder, "probabilities.csv"))
    keep = [i for i, name in enumerate(names) if truth.get(name)]
    return ([names[i] for i in keep], [truth[names[i]] for i in keep], [list(values[i]) for i in keep],
            class_names)


def pooled_row(folders, melanoma, resamples=1000):
    """Score the out-of-fold predictions of several evaluation folders as one set.

    folders: evaluation folders of disjoint test subsets (read_scored each).
    Returns {"images", "auc" (melanoma), "auc_95", "balanced_accuracy",
    "balanced_accuracy_95", "mean_auc"}, intervals by the percentile bootstrap
    over the pooled images (skinlesion.classifier_metrics.bootstrap_intervals).
    """
    import numpy as np
    from skinlesion import scoring
    from skinlesion.classifier_metrics import bootstrap_intervals
    names, truth, probs, class_names = [], [], [], None
    for folder in folders:
        n, t, p, c = read_scored(folder)
        if class_names is not None and c != class_names:
            raise ValueError(f"{folder}: classes {c} differ from {class_names}")
        class_names = c
        names += n
        truth += t
        probs += p
    if len(set(names)) != len(names):
        raise ValueError("pooled folds share images: the test subsets must be disjoint")
    index = np.array([class_names.index(t) for t in truth])
    probs = np.array(probs)
    scored = scoring.score_classification(index, probs, class_names)
    intervals = bootstrap_intervals(index, probs, class_names, resamples)
    return {"images": len(names), "auc": scored["auc"].get(melanoma), "auc_95": intervals["auc"].get(melanoma),
            "balanced_accuracy": scored["balanced_accuracy"], "balanced_accuracy_95": intervals["balanced_accuracy"],
            "mean_auc": scored["mean_auc"]}


def fmt(value, interval=None):
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" ({interval[0]:.3f}-{interval[1]:.3f})" if interval else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--data", default=None, help="dataset folder (default: ../shared/data/...)")
    parser.add_argument("--classes", default=None,
                        help="scheme (default: the melanoma-vs-rest scheme for isic2017, ph2 for ph2)")
    parser.add_argument("--segmenter", default=None, help="isic2017: the Mask R-CNN run giving the crops")
    parser.add_argument("--seeds", default="0,1,2", help="isic2017: one split per seed; ph2: the first is the "
                        "fold partition's seed")
    parser.add_argument("--folds", type=int, default=5, help="ph2: cross-validation folds")
    parser.add_argument("--fold-list", default=None, help="ph2: comma list of folds to run (default all)")
    parser.add_argument("--seg-config", action="append", default=[], help="ph2: extra Mask R-CNN --config KEY=VALUE")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"isic2017: comma list of {', '.join(VARIANTS)} (default all)")
    parser.add_argument("--minutes", type=float, default=30.0, help="classifier training budget per run")
    parser.add_argument("--seg-minutes", type=float, default=30.0, help="ph2: Mask R-CNN budget per fold")
    parser.add_argument("--mask-mode", default="attention", help="ph2: the classifier's MASK_MODE")
    parser.add_argument("--config", action="append", default=[], help="extra classifier --config KEY=VALUE")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    common.add_out_argument(parser, os.path.join("bench_classifier"), "output folder")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if unknown:
        sys.exit(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    data = args.data or DATASETS[args.dataset]
    classes = args.classes or ("melanoma" if args.dataset == "isic2017" else "ph2")
    melanoma = "melanoma"
    out = os.path.join(args.out, args.dataset)
    extra = [a for pair in args.config for a in ("--config", pair)]
    results = {"dataset": args.dataset, "data": data, "classes": classes, "split": SPLIT, "rows": {}}
    seeds = args.seeds.split(",")
    if args.dataset == "ph2":
        return ph2_folds(args, data, classes, melanoma, out, extra, results)
    if not args.segmenter:
        sys.exit("isic2017: pass --segmenter RUN (a Mask R-CNN run that has not seen these images)")
    for seed in seeds:
        for variant in args.variants.split(","):
            mask_mode = VARIANTS[variant]
            folder = os.path.join(out, f"seed{seed}", variant)
            if mask_mode and not args.dry_run:
                share_crop_cache(folder, os.path.join(out, "crop_cache"))
            for cmd in classifier_commands(data, classes, folder, seed, args.minutes,
                                           args.segmenter if mask_mode else None, mask_mode, extra):
                run(cmd, args.dry_run)
            results["rows"].setdefault(variant, []).append(classifier_row(folder, melanoma))
    if args.dry_run:
        return 0
    return write_results(out, results, [f"{args.dataset} ({classes}), seeds {args.seeds}, split {SPLIT}", ""],
                         [[variant, seed] for variant, rows in results["rows"].items() for seed in seeds])


def ph2_folds(args, data, classes, melanoma, out, extra, results):
    """PH2 k-fold: per fold a Mask R-CNN (its class head scored) and the classifier on its crops; pooled rows."""
    seed = args.seeds.split(",")[0]
    folds = [int(k) for k in args.fold_list.split(",")] if args.fold_list else list(range(args.folds))
    seg_extra = [a for pair in args.seg_config for a in ("--config", pair)]
    results.update({"folds": args.folds, "fold_list": folds, "seed": int(seed), "split": f"foldK/{args.folds}",
                    "seg_minutes": args.seg_minutes, "minutes": args.minutes, "mask_mode": args.mask_mode,
                    "seg_config": args.seg_config, "config": args.config})
    labels = []
    for k in folds:
        split = f"fold{k}/{args.folds}"
        folder = os.path.join(out, f"fold{k}")
        seg_logs = os.path.join(folder, "maskrcnn")
        run(lesions("--mode", "train", "--dataset", data, "--classes", classes, "--seed", seed, "--split", split,
                    "--minutes", args.seg_minutes, "--logs", seg_logs, *seg_extra), args.dry_run)
        run(lesions("--mode", "evaluate", "--dataset", data, "--seed", seed, "--split", split, "--subset", "test",
                    "--logs", seg_logs, "--out", os.path.join(folder, "maskrcnn_eval")), args.dry_run)
        for cmd in classifier_commands(data, classes, os.path.join(folder, "classifier"), seed, args.minutes,
                                       seg_logs, args.mask_mode, extra, split):
            run(cmd, args.dry_run)
        if args.dry_run:
            continue
        metrics = read_json(os.path.join(folder, "maskrcnn_eval", "metrics.json"))
        head = metrics.get("classification", {})
        results["rows"].setdefault("maskrcnn_head", []).append(
            {"auc": head.get("auc", {}).get(melanoma), "balanced_accuracy": head.get("balanced_accuracy"),
             "jaccard": (metrics.get("segmentation") or {}).get("jaccard")})
        results["rows"].setdefault("classifier", []).append(classifier_row(os.path.join(folder, "classifier"),
                                                                           melanoma))
        labels.append(f"fold {k}")
    if args.dry_run:
        return 0
    for variant, evaluation in (("maskrcnn_head", "maskrcnn_eval"), ("classifier", os.path.join("classifier", "eval"))):
        pooled = pooled_row([os.path.join(out, f"fold{k}", evaluation) for k in folds], melanoma)
        results.setdefault("pooled", {})[variant] = pooled
        results["rows"][variant].append(pooled)
    labels.append("pooled")
    head = f"ph2 ({classes}), {len(folds)} of {args.folds} folds (seed {seed}), Mask R-CNN {args.seg_minutes:g} min"
    return write_results(out, results, [head + f", classifier {args.minutes:g} min ({args.mask_mode})", ""],
                         [[variant, label] for variant, rows in results["rows"].items() for label in labels])


def write_results(out, results, lines, keys):
    """Write results.json and results.md (a table row per key [variant, label]); print the table."""
    rows = [r for variant in results["rows"] for r in results["rows"][variant]]
    lines = lines + [
             common.markdown_table(["variant", "seed / fold", "melanoma AUC (95 %)", "balanced accuracy (95 %)",
                                    "Jaccard", "s / epoch", "images / s"],
                                   [[variant, label, fmt(r.get("auc"), r.get("auc_95")),
                                     fmt(r.get("balanced_accuracy"), r.get("balanced_accuracy_95")),
                                     fmt(r.get("jaccard")), fmt(r.get("seconds_per_epoch")),
                                     fmt(r.get("images_per_second"))]
                                    for (variant, label), r in zip(keys, rows)])]
    os.makedirs(out, exist_ok=True)
    common.write_json(os.path.join(out, "results.json"), results)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
