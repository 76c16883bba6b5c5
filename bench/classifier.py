"""Second-stage classifier benchmark (issue 19): whole image vs lesion crop vs crop + mask.

    python bench/classifier.py isic2017 --segmenter logs/lesion2026... --minutes 30   # 4 variants x 3 seeds
    python bench/classifier.py ph2 --minutes 20 --seg-minutes 30                       # beside the Mask R-CNN head
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

ph2: per seed, a Mask R-CNN is trained on that seed's split
(``--classes ph2``), its class head scored (``--mode evaluate``), and the
classifier trained on its crops (MASK_MODE from --mask-mode) and scored on
the same test subset: balanced accuracy and melanoma AUC side by side.

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


def classifier_commands(data, classes, folder, seed, minutes, segmenter, mask_mode, extra):
    logs = os.path.join(folder, "runs")
    train = ["--mode", "train", "--model", "classifier", "--dataset", data, "--classes", classes,
             "--seed", seed, "--split", SPLIT, "--minutes", minutes, "--logs", logs, *extra]
    if segmenter:
        train += ["--segmenter", segmenter, "--config", f"MASK_MODE={mask_mode}"]
    evaluate = ["--mode", "evaluate", "--model", "classifier", "--dataset", data, "--classes", classes,
                "--seed", seed, "--split", SPLIT, "--subset", "test", "--logs", logs,
                "--out", os.path.join(folder, "eval")]
    return [lesions(*train), lesions(*evaluate)]


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
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"isic2017: comma list of {', '.join(VARIANTS)} (default all)")
    parser.add_argument("--minutes", type=float, default=30.0, help="classifier training budget per run")
    parser.add_argument("--seg-minutes", type=float, default=30.0, help="ph2: Mask R-CNN budget per seed")
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
    for seed in args.seeds.split(","):
        if args.dataset == "isic2017":
            if not args.segmenter:
                sys.exit("isic2017: pass --segmenter RUN (a Mask R-CNN run that has not seen these images)")
            for variant in args.variants.split(","):
                mask_mode = VARIANTS[variant]
                folder = os.path.join(out, f"seed{seed}", variant)
                if mask_mode and not args.dry_run:
                    share_crop_cache(folder, os.path.join(out, "crop_cache"))
                for cmd in classifier_commands(data, classes, folder, seed, args.minutes,
                                               args.segmenter if mask_mode else None, mask_mode, extra):
                    run(cmd, args.dry_run)
                results["rows"].setdefault(variant, []).append(classifier_row(folder, melanoma))
            continue
        folder = os.path.join(out, f"seed{seed}")
        seg_logs = os.path.join(folder, "maskrcnn")
        run(lesions("--mode", "train", "--dataset", data, "--classes", classes, "--seed", seed, "--split", SPLIT,
                    "--minutes", args.seg_minutes, "--logs", seg_logs), args.dry_run)
        run(lesions("--mode", "evaluate", "--dataset", data, "--seed", seed, "--split", SPLIT, "--subset", "test",
                    "--logs", seg_logs, "--out", os.path.join(folder, "maskrcnn_eval")), args.dry_run)
        head = read_json(os.path.join(folder, "maskrcnn_eval", "metrics.json")).get("classification", {})
        results["rows"].setdefault("maskrcnn_head", []).append(
            {"auc": head.get("auc", {}).get(melanoma), "balanced_accuracy": head.get("balanced_accuracy")})
        for cmd in classifier_commands(data, classes, os.path.join(folder, "classifier"), seed, args.minutes,
                                       seg_logs, args.mask_mode, extra):
            run(cmd, args.dry_run)
        results["rows"].setdefault("classifier", []).append(classifier_row(os.path.join(folder, "classifier"),
                                                                           melanoma))
    if args.dry_run:
        return 0
    lines = [f"{args.dataset} ({classes}), seeds {args.seeds}, split {SPLIT}", "",
             common.markdown_table(["variant", "seed", "melanoma AUC (95 %)", "balanced accuracy (95 %)",
                                    "s / epoch", "images / s"],
                                   [[variant, seed, fmt(r.get("auc"), r.get("auc_95")),
                                     fmt(r.get("balanced_accuracy"), r.get("balanced_accuracy_95")),
                                     fmt(r.get("seconds_per_epoch")), fmt(r.get("images_per_second"))]
                                    for variant, rows in results["rows"].items()
                                    for seed, r in zip(args.seeds.split(","), rows)])]
    os.makedirs(out, exist_ok=True)
    common.write_json(os.path.join(out, "results.json"), results)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
