"""PH2 benchmark: our Mask R-CNN against a U-Net and an Otsu threshold, trained from scratch.

    python bench/ph2.py --minutes 50                # all three methods (~2 h with both models)
    python bench/ph2.py --only otsu                 # the classical baseline alone (~1 min)
    python bench/ph2.py --only mrcnn --minutes 20   # one method, smaller budget

Every method sees the same fixed split (bench/ph2_split.py: seeded, stratified
by diagnosis, 160 train / 40 test), the same wall-clock training budget and
the same scorer (skinlesion.scoring, the ISIC 2018 Task 1 metrics). The
trained models are then run on the HAM10000 sample (other dermoscope, other
colours) to see whether they learned lesions or PH2's look.

Mask R-CNN: ``lesions.py --mode train --dataset PH2 --classes ph2`` (one model
segments and classifies: common nevus / atypical nevus / melanoma), then
``--mode evaluate`` on the test subset (segmentation, and melanoma AUC and
balanced accuracy from the class head) and ``--mode predict`` + mask scoring
on HAM10000. U-Net and Otsu: bench/baselines.py.

Output in --out (default <repo root>/logs/ph2): split.json, one folder per
method (checkpoints, masks, metrics.json, per_image.csv), results.json and
results.md (the table the README quotes). The machine is stated in both.
Every command runs with the repository root as its working directory; paths
given on the command line are taken relative to the current one.
"""
import argparse
import json
import os
import subprocess
import sys
import time

if __package__:  # imported as bench.ph2
    from . import common
else:  # run as a script: bench/ is sys.path[0]
    import common

ROOT = common.ROOT
SHARED = common.SHARED_DATA
METHODS = ("mrcnn", "unet", "otsu")
from skinlesion.scoring import SEGMENTATION_METRICS as SEG_KEYS  # noqa: E402  (after common's path setup)


def run(cmd, log_path):
    """Run a command with its output appended to log_path; return (returncode, seconds)."""
    start = time.time()
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.time() - start
    print(f"  {'ok' if code == 0 else 'FAILED (exit %d)' % code} in {seconds / 60:.1f} min: "
          f"{' '.join(cmd[1:4])} ... (log {log_path})", flush=True)
    return code, seconds


def read_json(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return None


def mrcnn_commands(args, folder):
    """The lesions.py commands of the Mask R-CNN run (train, evaluate, HAM10000 predict + score)."""
    py = sys.executable
    common = ["--logs", os.path.join(folder, "runs"), "--quiet"]
    data = ["--dataset", args.data, "--split", "0.8,0,0.2", "--seed", "0"]
    train = [py, "lesions.py", "--mode", "train", *data, "--classes", "ph2",
             "--epochs-heads", str(args.epochs), "--epochs-all", str(max(1, args.epochs // 4)),
             "--minutes", str(args.minutes), "--augment", args.augment,
             "--config", f"IMAGE_MAX_DIM={args.size}", "--config", f"IMAGE_MIN_DIM={args.size}",
             *sum((["--config", c] for c in args.config), []), *common]
    inference = ["--tta"] if args.tta else []
    inference += sum((["--config", c] for c in args.eval_config), [])
    evaluate = [py, "lesions.py", "--mode", "evaluate", *data, "--subset", "test",
                "--out", os.path.join(folder, "test"), *inference, *common]
    commands = {"train": train, "evaluate": evaluate}
    if args.ham and os.path.isdir(args.ham):
        ham_images = os.path.join(args.ham, "HAM10000_images_part_1")
        commands["ham_predict"] = [py, "lesions.py", "--mode", "predict", "--image", ham_images,
                                   "--out", os.path.join(folder, "ham"), *inference, *common]
        commands["ham_score"] = [py, "lesions.py", "--mode", "evaluate",
                                 "--truth", os.path.join(args.ham, "HAM10000_segmentations_lesion_tschandl"),
                                 "--predictions", os.path.join(folder, "ham", "masks"),
                                 "--out", os.path.join(folder, "ham", "score"), "--quiet"]
    return commands


def baseline_commands(args, method, folder, split_path):
    """The bench/baselines.py commands of the U-Net or Otsu run."""
    py = sys.executable
    cmd = [py, os.path.join("bench", "baselines.py"), method, "--split", split_path, "--out", folder]
    if method == "unet":
        cmd += ["--size", str(args.size), "--minutes", str(args.minutes), "--seed", "0"]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
    commands = {"run": cmd}
    if args.ham and os.path.isdir(args.ham):
        cmd += ["--images", os.path.join(args.ham, "HAM10000_images_part_1")]
        commands["ham_score"] = [py, "lesions.py", "--mode", "evaluate",
                                 "--truth", os.path.join(args.ham, "HAM10000_segmentations_lesion_tschandl"),
                                 "--predictions", os.path.join(folder, "extra", "masks"),
                                 "--out", os.path.join(folder, "ham_score"), "--quiet"]
    return commands


def collect(method, folder):
    """Scores of one method from the files its commands wrote."""
    row = {"method": method}
    if method == "mrcnn":
        test = read_json(os.path.join(folder, "test", "metrics.json")) or {}
        ham = read_json(os.path.join(folder, "ham", "score", "metrics.json")) or {}
        classification = test.get("classification") or {}
        row["classification"] = classification
    else:
        test = read_json(os.path.join(folder, "metrics.json")) or {}
        ham = read_json(os.path.join(folder, "ham_score", "metrics.json")) or {}
    row["test"] = test.get("segmentation")
    row["test_images"] = test.get("images")
    row["ham"] = ham.get("segmentation")
    row["ham_images"] = ham.get("images")
    return row


def melanoma_scores(classification):
    """(melanoma AUC, balanced accuracy) from a score_classification dict, or (None, None)."""
    if not classification:
        return None, None
    mel = (classification.get("per_class") or {}).get("melanoma") or {}
    return mel.get("auc"), classification.get("balanced_accuracy")


def fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


TABLE_HEADERS = ("method", "Jaccard", "thresholded Jaccard", "Dice", "sensitivity", "specificity",
                 "HAM10000 sample Jaccard", "train min")


def markdown(results):
    """The results table (markdown) for the README."""
    table = []
    for row in results["rows"]:
        test = row.get("test") or {}
        ham = row.get("ham") or {}
        table.append((row["method"], *(fmt(test.get(k)) for k in SEG_KEYS[:5]), fmt(ham.get("jaccard")),
                      fmt(row.get("train_minutes"), 1)))
    lines = [f"PH2, {results['split']['train']} train / {results['split']['test']} test "
             f"(seed 0, stratified), from scratch, {results['minutes']:g} min training budget per model, "
             f"{results['size']} px; machine: {common.machine_summary(results['machine'])}.", "",
             common.markdown_table(TABLE_HEADERS, table)]
    for row in results["rows"]:
        if row["method"] == "mrcnn":
            auc, bacc = melanoma_scores(row.get("classification"))
            lines += ["", f"Mask R-CNN class head (`ph2` scheme) on the test images: melanoma AUC "
                          f"{fmt(auc)}, balanced accuracy {fmt(bacc)}."]
    lines += ["", "Command: `" + results["command"] + "`"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(SHARED, "PH2Dataset"), help="PH2Dataset folder")
    parser.add_argument("--ham", default=os.path.join(SHARED, "HAM10000_sample"),
                        help="HAM10000 folder for the generalisation check (skipped when absent)")
    common.add_out_argument(parser, "ph2", "output folder")
    parser.add_argument("--only", default=",".join(METHODS), help="comma list of mrcnn, unet, otsu")
    parser.add_argument("--minutes", type=float, default=50.0, help="training budget per model (wall clock)")
    parser.add_argument("--epochs", type=int, default=40, help="Mask R-CNN stage-1 epoch cap (100 steps each; stage 2 adds a quarter). "
                             "The --minutes budget usually ends training first")
    parser.add_argument("--size", type=int, default=256, help="input size of both models")
    parser.add_argument("--augment", default="strong", choices=["default", "strong", "none"])
    parser.add_argument("--config", action="append", default=[], help="extra lesions.py --config KEY=VALUE")
    parser.add_argument("--eval-config", action="append", default=[],
                        help="lesions.py --config KEY=VALUE for evaluate and predict only (inference "
                             "settings such as DETECTION_MASK_BOX_SCALE, which are not stored with the run)")
    parser.add_argument("--tta", action="store_true",
                        help="Mask R-CNN: evaluate and predict with test-time flips (lesions.py --tta)")
    parser.add_argument("--threads", type=int, default=0, help="U-Net TF threads (0 = TF default)")
    parser.add_argument("--parallel", action="store_true",
                        help="train the U-Net at the same time as the Mask R-CNN (one core each)")
    parser.add_argument("--collect-only", action="store_true", help="only rebuild results from the folders")
    parser.add_argument("--reevaluate", action="store_true",
                        help="Mask R-CNN: keep the trained checkpoint, rerun evaluate and the HAM10000 steps "
                             "(after a change to inference)")
    args = parser.parse_args(argv)
    args.data, args.ham, args.out = (common.absolute(p) for p in (args.data, args.ham, args.out))
    methods = [m.strip() for m in args.only.split(",") if m.strip()]
    for method in methods:
        if method not in METHODS:
            parser.error(f"--only {method}: choose from {', '.join(METHODS)}")
    if not os.path.isdir(args.data):
        sys.exit(f"--data {args.data}: no such folder; this benchmark needs the PH2 dataset "
                 f"(folder with 'PH2 Dataset images' and PH2_dataset.xlsx)")
    os.makedirs(args.out, exist_ok=True)

    from bench.ph2_split import ph2_split
    split_path = os.path.join(args.out, "split.json")
    split = ph2_split(args.data)
    common.write_json(split_path, split)

    timings = {}  # this run's steps; merged into timings.json at the end
    if not args.collect_only:
        background = None
        if "unet" in methods and "mrcnn" in methods and args.parallel:
            folder = os.path.join(args.out, "unet")
            os.makedirs(folder, exist_ok=True)
            cmd = baseline_commands(args, "unet", folder, split_path)["run"]
            print("U-Net in the background:", " ".join(cmd), flush=True)
            background = (subprocess.Popen(cmd, cwd=ROOT, stdout=open(os.path.join(folder, "run.log"), "a"),
                                           stderr=subprocess.STDOUT), time.time())
        for method in methods:
            folder = os.path.join(args.out, method)
            os.makedirs(folder, exist_ok=True)
            log_path = os.path.join(folder, "run.log")
            print(f"{method}:", flush=True)
            if method == "mrcnn":
                for step, cmd in mrcnn_commands(args, folder).items():
                    if step == "train" and args.reevaluate:
                        continue
                    code, seconds = run(cmd, log_path)
                    timings[f"mrcnn_{step}"] = round(seconds, 1)
                    if code and step == "train":
                        break
            else:
                commands = baseline_commands(args, method, folder, split_path)
                if method == "unet" and background is not None:
                    process, started = background
                    process.wait()
                    timings["unet_run"] = round(time.time() - started, 1)
                else:
                    _, seconds = run(commands["run"], log_path)
                    timings[f"{method}_run"] = round(seconds, 1)
                if "ham_score" in commands:
                    run(commands["ham_score"], log_path)
        # Another ph2.py (e.g. the baselines beside the Mask R-CNN) may have written
        # timings since this one started: merge, do not overwrite.
        timings = {**(read_json(os.path.join(args.out, "timings.json")) or {}), **timings}
        with open(os.path.join(args.out, "timings.json"), "w") as f:
            json.dump(timings, f, indent=1)
    timings = read_json(os.path.join(args.out, "timings.json")) or {}

    rows = []
    for method in METHODS:
        folder = os.path.join(args.out, method)
        if not os.path.isdir(folder):
            continue
        row = collect(method, folder)
        if method == "mrcnn":
            row["train_minutes"] = (timings.get("mrcnn_train") or 0) / 60 or None
        else:
            info = read_json(os.path.join(folder, "timing.json")) or {}
            seconds = info.get("train_seconds")
            row["train_minutes"] = seconds / 60 if seconds else None
        rows.append(row)
    header = common.run_header(__file__, argv)
    results = {
        "machine": common.machine_info(), "date": time.strftime("%Y-%m-%d"), "commit": header["commit"],
        "minutes": args.minutes, "size": args.size,
        "split": {"train": len(split["train"]), "test": len(split["test"]), "seed": split["seed"]},
        "command": header["command"],
        "rows": rows,
    }
    common.write_json(os.path.join(args.out, "results.json"), results)
    table = markdown(results)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
