"""Cross-dataset benchmark: does a model trained on one dermoscopy set find lesions in another?

    python bench/cross_dataset.py --weights RUN_CHECKPOINT.weights.h5 --out logs/cross/NAME
    python bench/cross_dataset.py --weights CKPT --rows isic --isic-limit 500   # a seeded sample
    python bench/cross_dataset.py --weights DEMO_CKPT --rows ph2all             # sim-to-real

Rows (each a lesions.py command plus a scorer; ``--rows`` picks them):

- ``isic``: ``ISIC2017_Training_256`` (real ISIC 2017 images, one lesion each,
  no masks): the share of images whose predicted lesion mask covers a
  plausible area (more than ``--plausible`` = 0.5 % of the image), the share
  left to the one-lesion fallback, melanoma AUC from the predicted
  class probabilities (needs a scheme with a melanoma class, e.g. ``ph2``),
  and where the masks lie: their Jaccard with the no-learning Otsu mask
  (median, and the share above 0.3; a mask beside the lesion scores near 0).
- ``moved``: the PH2 test split (``--split 0.8,0,0.2 --seed 0``, as
  bench/ph2.py) moved onto larger skin canvases so each lesion covers
  ``--low``-``--high`` (2-10 %) of the image (skinlesion.reframe: no pixel
  resampled, masks exact), Jaccard against the moved masks.
- ``square``: the same test images cut to their largest square holding the
  lesion (skinlesion.reframe.square_crop: no resampling, masks exact), the
  frame shape of the ISIC copies; Jaccard against the cut masks.
- ``ph2test``: the same test images at their own framing (reference).
- ``ph2all``: all 200 PH2 images (for a model that never saw PH2, such as
  the synthetic demo: how far the generator is from real dermoscopy).
- ``ham``: the HAM10000 sample (5 images: a sanity row, not a measurement).

Not part of CI: it needs ../shared/data and a trained checkpoint. Writes
``--out``/results.json and results.md with the machine and commands. The
lesions.py commands run in the repository root; paths given on the command
line are taken relative to the current directory.
"""
import argparse
import csv
import json
import os
import sys

import numpy as np

if __package__:  # imported as bench.cross_dataset
    from . import common
else:  # run as a script: bench/ is sys.path[0]
    import common

SHARED = common.SHARED_DATA
ROWS = ("isic", "moved", "square", "ph2test", "ph2all", "ham")
from skinlesion.scoring import SEGMENTATION_METRICS  # noqa: E402  (after common's path setup)

SEG_KEYS = SEGMENTATION_METRICS[:5]  # the table leaves pixel accuracy out
TABLE_HEADERS = ("row", "images", "Jaccard", "thresholded", "Dice", "plausible share", "confident share", "fallback",
                 "median lesion share", "melanoma AUC", "Otsu Jaccard (median)", "Otsu overlap > 0.3")


def run(cmd, log_path):
    """bench/ph2.py's logged run, raising on failure. Returns seconds."""
    from bench.ph2 import run as run_logged
    code, seconds = run_logged(cmd, log_path)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (exit {code}); see {log_path}")
    return seconds


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_predicted_masks(mask_dir):
    """{stem: bool [H, W]} for the *_segmentation.png masks in mask_dir, each file read once."""
    from PIL import Image
    masks = {}
    for name in sorted(os.listdir(mask_dir)):
        if name.endswith("_segmentation.png"):
            masks[name[:-len("_segmentation.png")]] = np.asarray(
                Image.open(os.path.join(mask_dir, name)).convert("L")) > 127
    return masks


def melanoma_auc(prob_csv, truth_csv):
    """Melanoma AUC of a probabilities.csv against an image_id,melanoma table; None without a melanoma column."""
    from sklearn.metrics import roc_auc_score
    with open(prob_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None, 0
    column = next((c for c in rows[0] if "melanoma" in c.lower()), None)
    if column is None:
        return None, 0
    with open(truth_csv, newline="") as f:
        truth = {r["image_id"]: float(r["melanoma"]) for r in csv.DictReader(f)}
    key = "image" if "image" in rows[0] else next(iter(rows[0]))
    pairs = [(truth[os.path.splitext(r[key])[0]], float(r[column])) for r in rows
             if os.path.splitext(r[key])[0] in truth]
    labels = np.array([p[0] for p in pairs]) > 0.5
    if labels.all() or not labels.any():
        return None, len(pairs)
    return float(roc_auc_score(labels, [p[1] for p in pairs])), len(pairs)


def otsu_agreement(images_dir, masks, names):
    """Jaccard [N] of each predicted mask with the no-learning Otsu mask of its image (bench/baselines.otsu_mask).

    masks: {stem: bool [H, W]} from read_predicted_masks; names: image file
    names in images_dir (those without a mask are left out). The ISIC copies
    have no masks; a mask on the lesion overlaps the dark region Otsu finds,
    a mask beside it does not, so this tells where a mask lies, which the
    plausible-area share cannot (a mask on skin has an area).
    """
    from bench.baselines import otsu_mask
    from mrcnn.dataset import read_image_rgb
    scores = []
    for name in names:
        predicted = masks.get(os.path.splitext(name)[0])
        if predicted is None:
            continue
        reference = otsu_mask(read_image_rgb(os.path.join(images_dir, name)))
        union = np.logical_or(predicted, reference).sum()
        scores.append(float(np.logical_and(predicted, reference).sum() / union) if union else 1.0)
    return np.array(scores)


def isic_row(args, base, log_path):
    """Predict on ISIC2017_Training_256 (or a seeded sample of it) and score plausibility and melanoma AUC."""
    from skinlesion.layouts.files import IMAGE_EXTENSIONS
    images = os.path.join(args.isic, "ISIC-2017_Training_Data")
    names = sorted(n for n in os.listdir(images) if n.lower().endswith(IMAGE_EXTENSIONS))
    if args.isic_limit and args.isic_limit < len(names):
        rng = np.random.default_rng(0)
        names = sorted(rng.choice(names, args.isic_limit, replace=False).tolist())
    sample = os.path.join(args.out, "isic_images")
    os.makedirs(sample, exist_ok=True)
    for name in names:
        link = os.path.join(sample, name)
        if not os.path.exists(link):
            os.symlink(os.path.abspath(os.path.join(images, name)), link)
    out = os.path.join(args.out, "isic")
    cmd = [*base("predict"), "--image", sample, "--out", out]
    seconds = run(cmd, log_path)
    masks = read_predicted_masks(os.path.join(out, "masks"))
    records = read_json(os.path.join(out, "predictions.json"))["images"]
    fallback = sum(1 for r in records if r.get("fallback"))
    low = sum(1 for r in records if r.get("low_confidence"))
    values = np.array([float(m.mean()) for m in masks.values()])
    auc, paired = melanoma_auc(os.path.join(out, "probabilities.csv"),
                               os.path.join(args.isic, "ISIC-2017_Training_Classes.csv"))
    agreement = otsu_agreement(sample, masks, names)
    return {"images": len(values), "plausible_share": float(np.mean(values > args.plausible)),
            "confident_share": float(1 - low / max(1, len(records))),
            "fallback_share": float(fallback / max(1, len(records))),
            "empty": int(np.sum(values == 0)), "fallback": fallback, "low_confidence": low,
            "median_lesion_share": float(np.median(values)) if len(values) else None,
            "melanoma_auc": auc, "auc_images": paired, "seconds": round(seconds, 1),
            "otsu_jaccard_median": float(np.median(agreement)) if len(agreement) else None,
            "otsu_overlap_share": float(np.mean(agreement > 0.3)) if len(agreement) else None,
            "command": " ".join(cmd)}


def ph2_pairs(args, subset):
    """[(stem, image uint8, mask bool)] of the PH2 split subset ("test") or all images ("all")."""
    from PIL import Image
    from bench.ph2_split import ph2_split
    split = ph2_split(args.ph2)
    items = split["test"] if subset == "test" else split["train"] + split["test"]
    pairs = []
    for item in sorted(items, key=lambda i: i["stem"]):
        image = np.asarray(Image.open(item["image"]).convert("RGB"))
        mask = np.asarray(Image.open(item["mask"]).convert("L")) > 0
        pairs.append((item["stem"], image, mask))
    return pairs


def write_plain(pairs, folder):
    """Write (stem, image, mask) pairs unchanged in the plain folder layout (skinlesion.reframe.write_pair)."""
    from skinlesion.reframe import write_pair
    for stem, image, mask in pairs:
        write_pair(folder, stem, image, mask)


def segmentation_row(args, base, log_path, name, images, truth):
    """Predict on a folder of images and score the masks against a folder of truth masks."""
    out = os.path.join(args.out, name)
    predict = [*base("predict"), "--image", images, "--out", out]
    seconds = run(predict, log_path)
    score = [sys.executable, "lesions.py", "--mode", "evaluate", "--truth", truth,
             "--predictions", os.path.join(out, "masks"), "--out", os.path.join(out, "score"), "--quiet"]
    run(score, log_path)
    metrics = read_json(os.path.join(out, "score", "metrics.json"))
    seg = metrics.get("segmentation", metrics)
    row = {k: seg.get(k) for k in SEG_KEYS}
    row.update({"images": metrics.get("images"), "seconds": round(seconds, 1),
                "command": " ".join(predict)})
    records = read_json(os.path.join(out, "predictions.json"))["images"]
    row["fallback"] = sum(1 for r in records if r.get("fallback"))
    row["confident_share"] = float(1 - sum(1 for r in records if r.get("low_confidence")) / max(1, len(records)))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="checkpoint (.weights.h5) of a lesions.py run")
    parser.add_argument("--logs", default=common.LOGS,
                        help="lesions.py --logs (finds the run's config.json; default <repo root>/logs)")
    common.add_out_argument(parser, "cross", "output folder")
    parser.add_argument("--rows", default="isic,moved,square,ph2test,ham", help="comma list of " + ", ".join(ROWS))
    parser.add_argument("--isic", default=os.path.join(SHARED, "ISIC2017_Training_256"))
    parser.add_argument("--isic-limit", type=int, default=0, help="seeded sample of N ISIC images (0 = all 2000)")
    parser.add_argument("--plausible", type=float, default=0.005, help="smallest plausible lesion share")
    parser.add_argument("--ph2", default=os.path.join(SHARED, "PH2Dataset"))
    parser.add_argument("--ham", default=os.path.join(SHARED, "HAM10000_sample"))
    parser.add_argument("--low", type=float, default=0.02, help="moved PH2: smallest lesion share")
    parser.add_argument("--high", type=float, default=0.10, help="moved PH2: largest lesion share")
    parser.add_argument("--tta", action="store_true", help="test-time flips in every predict")
    parser.add_argument("--refine", action="store_true", help="coarse-to-fine in every predict")
    parser.add_argument("--config", action="append", default=[], help="inference --config KEY=VALUE")
    args = parser.parse_args(argv)
    for name in ("weights", "logs", "out", "isic", "ph2", "ham"):
        setattr(args, name, common.absolute(getattr(args, name)))
    rows = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        sys.exit(f"--rows: unknown {unknown}; rows are {', '.join(ROWS)}")
    if not os.path.exists(args.weights):
        sys.exit(f"--weights {args.weights}: no such checkpoint (train with lesions.py --mode train first)")
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "commands.log")

    def base(mode):
        extra = (["--tta"] if args.tta else []) + (["--refine"] if args.refine else [])
        extra += sum((["--config", c] for c in args.config), [])
        return [sys.executable, "lesions.py", "--mode", mode, "--weights", args.weights, "--logs", args.logs,
                "--quiet", *extra]

    results = {**common.run_header(__file__, argv), "weights": args.weights, "machine": common.machine_info(),
               "tta": args.tta, "refine": args.refine, "rows": {}}
    for row in rows:
        print(f"{row} ...", flush=True)
        try:
            if row == "isic":
                results["rows"][row] = isic_row(args, base, log_path)
            elif row == "moved":
                from skinlesion.reframe import write_moved_folder
                folder = os.path.join(args.out, "moved_data")
                moves = write_moved_folder(ph2_pairs(args, "test"), folder, args.low, args.high, seed=0)
                result = segmentation_row(args, base, log_path, "moved", os.path.join(folder, "images"),
                                          os.path.join(folder, "masks"))
                result["lesion_share_median"] = float(np.median([m["share_after"] for m in moves]))
                result["lesion_share_before_median"] = float(np.median([m["share_before"] for m in moves]))
                results["rows"][row] = result
            elif row == "square":
                from skinlesion.reframe import write_square_folder
                folder = os.path.join(args.out, "square_data")
                cuts = write_square_folder(ph2_pairs(args, "test"), folder)
                result = segmentation_row(args, base, log_path, "square", os.path.join(folder, "images"),
                                          os.path.join(folder, "masks"))
                result["lesion_kept_min"] = min(c["lesion_kept"] for c in cuts)
                results["rows"][row] = result
            elif row in ("ph2test", "ph2all"):
                folder = os.path.join(args.out, f"{row}_data")
                write_plain(ph2_pairs(args, "test" if row == "ph2test" else "all"), folder)
                results["rows"][row] = segmentation_row(args, base, log_path, row, os.path.join(folder, "images"),
                                                        os.path.join(folder, "masks"))
            elif row == "ham":
                results["rows"][row] = segmentation_row(
                    args, base, log_path, "ham", os.path.join(args.ham, "HAM10000_images_part_1"),
                    os.path.join(args.ham, "HAM10000_segmentations_lesion_tschandl"))
        except (RuntimeError, OSError, KeyError, ValueError) as err:
            results["rows"][row] = {"error": str(err)}
        print(f"  {json.dumps({k: v for k, v in results['rows'][row].items() if k != 'command'})}", flush=True)
    common.write_json(os.path.join(args.out, "results.json"), results)

    def fmt(value):
        return "" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
    table = []
    for name, r in results["rows"].items():
        if "error" in r:
            table.append((name, f"error: {r['error']}"))
            continue
        table.append((name, *(fmt(r.get(k)) for k in ("images", "jaccard", "threshold_jaccard", "dice",
                                                      "plausible_share", "confident_share", "fallback")),
                      fmt(r.get("median_lesion_share", r.get("lesion_share_median"))), fmt(r.get("melanoma_auc")),
                      fmt(r.get("otsu_jaccard_median")), fmt(r.get("otsu_overlap_share"))))
    lines = [f"weights: `{args.weights}`; tta {args.tta}, refine {args.refine}; "
             f"machine: {common.machine_summary(results['machine'])}", "",
             common.markdown_table(TABLE_HEADERS, table)]
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
