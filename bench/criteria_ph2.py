"""Dermoscopic criteria benchmark (issue 20): PH2 k-fold cross-validation of the criteria head.

    python bench/criteria_ph2.py --minutes 4 --size 128          # 5 folds x 2 variants
    python bench/criteria_ph2.py --folds 5 --variants criteria   # the criteria head only

PH2's 200 images with their diagnoses (common nevus / atypical nevus /
melanoma) and the criteria of PH2_dataset.xlsx (skinlesion.criteria), split
into ``--folds`` folds stratified by diagnosis (skinlesion.splits, seeded).
For each fold the classifier (skinlesion.classifier_train) is trained on
the other folds (one eighth of them carved out for validation: best epoch
and temperature) and predicts the held-out fold, so every image gets one
out-of-fold prediction. Two variants on the same folds: ``diagnosis`` (the
diagnosis softmax alone) and ``criteria`` (CRITERIA=ph2: the same plus the
criteria head). Crops: the square around PH2's ground-truth lesion mask
grown by CROP_MARGIN (the classifier's lesion_crop), so the benchmark
measures the classifier, not a segmenter.

Reported on the pooled out-of-fold predictions, with percentile bootstrap
95 % intervals (1000 resamples, seeded): AUC per criterion output; melanoma
AUC and balanced accuracy of the diagnosis head per variant; the melanoma
AUC of the 7-point readout (skinlesion.criteria.seven_point) from the
predicted criteria and, as the rule's ceiling, from the sheet's criteria.

Output in --out (default logs/bench_criteria): per fold and variant the run
folder, then results.json and results.md (bench/common.py writers, with the
machine). Not run by CI; needs ../shared/data/PH2Dataset.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (bench/common.py puts the repository on sys.path)

import numpy as np  # noqa: E402

VARIANTS = {"diagnosis": "", "criteria": "ph2"}


def load_ph2(path, margin, size):
    """PH2's labelled items with criteria: (ClassifierItems whose load() is the GT-mask crop, diagnoses)."""
    from skinlesion.classifier import lesion_crop
    from skinlesion.classifier_data import ClassifierItem
    from skinlesion.labelled import load_labelled, read_image
    from skinlesion.layouts import read_mask_bool
    records, summary = load_labelled(path, "all", "ph2")
    items = []
    for record in records:
        def load(r=record):
            image = read_image(r)
            mask = read_mask_bool(r.mask_path)  # the ISIC rule, as LesionDataset reads masks
            return lesion_crop(image, mask, margin, size)[0]
        items.append(ClassifierItem(record.image_id, load, int(record.class_index), criteria=record.criteria))
    missing = sum(1 for r in records if not r.criteria)
    if missing:
        print(f"note: {missing} PH2 images have no criteria in the sheet")
    return items, summary


def bootstrap(truth, score, resamples, seed):
    """(AUC, [low, high]) of score [N] for bool truth [N]; percentile bootstrap (classifier_metrics.bootstrap_auc)."""
    from skinlesion.classifier_metrics import bootstrap_auc
    return bootstrap_auc(truth, score, resamples, seed=seed)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.path.join(common.SHARED_DATA, "PH2Dataset"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--variants", default="diagnosis,criteria")
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget per fold and variant")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--size", type=int, default=128, help="crop side, pixels")
    parser.add_argument("--backbone", default="efficientnetv2b0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=1000)
    common.add_out_argument(parser, "bench_criteria", "output folder")
    args = parser.parse_args(argv)

    from skinlesion import criteria as crit
    from skinlesion import splits
    from skinlesion.classifier import ClassifierConfig
    from skinlesion.classifier_criteria import abnormal_truth, item_targets, present_probabilities
    from skinlesion.classifier_data import CropCache
    from skinlesion.classifier_metrics import apply_temperature
    from skinlesion.classifier_train import ClassifierRun, predict_items_all, train_classifier
    from skinlesion import scoring

    items, _ = load_ph2(args.data, 0.25, args.size)
    labels = np.array([item.label for item in items])
    names = [f"fold{k}" for k in range(args.folds)]
    fold_of = np.array(splits.assign_subsets([i.image_id for i in items], list(labels),
                                             [1.0 / args.folds] * args.folds, args.seed, names))
    outputs = crit.head_outputs(crit.PH2_CRITERIA)
    targets = item_targets(items, outputs)
    class_names = ["common_nevus", "atypical_nevus", "melanoma"]
    results = {**common.run_header(__file__, argv), "folds": args.folds, "images": len(items),
               "minutes_per_run": args.minutes, "epochs": args.epochs, "size": args.size,
               "backbone": args.backbone, "variants": {}}
    for variant in [v for v in args.variants.split(",") if v]:
        probs = np.zeros((len(items), 3))
        criteria_probs = {out.name: np.zeros((len(items), out.units)) for out in outputs}
        seconds = 0.0
        for k, fold in enumerate(names):
            test = np.flatnonzero(fold_of == fold)
            rest = np.flatnonzero(fold_of != fold)
            train_at, val_at = splits.carve_validation([items[i].image_id for i in rest], list(labels[rest]),
                                                       0.125, args.seed + k)
            config = ClassifierConfig(CLASS_SCHEME="ph2", BACKBONE=args.backbone, IMAGE_SIZE=args.size,
                                      CRITERIA=VARIANTS[variant], MINUTES=args.minutes, EPOCHS=args.epochs,
                                      SEED=args.seed + k, BATCH_SIZE=16)
            logs = os.path.join(args.out, f"{variant}_{fold}")
            started = time.monotonic()
            run_dir = train_classifier(config, [items[i] for i in rest[train_at]], [items[i] for i in rest[val_at]],
                                       logs, cache_root=os.path.join(args.out, "crop_cache"))
            seconds += time.monotonic() - started
            run = ClassifierRun(run_dir)
            cache = CropCache(os.path.join(args.out, "crop_cache"), None, config.CROP_MARGIN, config.IMAGE_SIZE)
            p, c = predict_items_all(run.model, run.config, cache, [items[i] for i in test], tta=bool(config.TTA))
            probs[test] = apply_temperature(p, run.temperature)
            for name, value in c.items():
                criteria_probs[name][test] = value
            print(f"{variant} {fold}: {len(test)} test images, run {run_dir}", flush=True)
        melanoma = labels == 2
        entry = {"train_seconds": round(seconds, 1),
                 "balanced_accuracy": scoring.score_classification(labels, probs, class_names)["balanced_accuracy"],
                 "melanoma_auc": bootstrap(melanoma, probs[:, 2], args.resamples, args.seed)}
        if VARIANTS[variant]:
            present = present_probabilities(criteria_probs, outputs)
            entry["criteria_auc"] = {}
            for column, out in enumerate(outputs):
                known = targets[:, column] >= 0
                truth = abnormal_truth(targets[known, column], out)
                entry["criteria_auc"][out.name] = {"positives": int(truth.sum()), "images": int(known.sum()),
                                                   "auc": bootstrap(truth, present[out.name][known],
                                                                    args.resamples, args.seed)}
            predicted = np.array([crit.seven_point(probabilities={n: present[n][i] for n in present})["score"]
                                  for i in range(len(items))])
            entry["seven_point_predicted_melanoma_auc"] = bootstrap(melanoma, predicted, args.resamples, args.seed)
        results["variants"][variant] = entry
    sheet = np.array([crit.seven_point(criteria=item.criteria or {})["score"] for item in items])
    results["seven_point_sheet_melanoma_auc"] = bootstrap(labels == 2, sheet, args.resamples, args.seed)
    common.write_json(os.path.join(args.out, "results.json"), results)
    text = "\n".join(markdown(results)) + "\n"
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    print(text)


def markdown(results):
    """The results table as markdown lines."""
    def fmt(pair):
        value, interval = pair
        if value is None:
            return "n/a"
        return f"{value:.3f}" + (f" ({interval[0]:.3f}-{interval[1]:.3f})" if interval else "")
    budget = (f"{results['minutes_per_run']} min per run" if results["minutes_per_run"] else
              f"{results.get('epochs')} epochs per run")
    lines = [f"PH2 {results['folds']}-fold, {results['images']} images, {results['backbone']} {results['size']} px, "
             f"{budget}, from scratch", "",
             "| variant | melanoma AUC | balanced accuracy (3 classes) | 7-point readout melanoma AUC |", "|---|---|---|---|"]
    for name, entry in results["variants"].items():
        seven = fmt(entry["seven_point_predicted_melanoma_auc"]) if "seven_point_predicted_melanoma_auc" in entry else "-"
        lines.append(f"| {name} | {fmt(entry['melanoma_auc'])} | {entry['balanced_accuracy']:.3f} | {seven} |")
    lines.append(f"| sheet criteria (rule ceiling) | - | - | {fmt(results['seven_point_sheet_melanoma_auc'])} |")
    for name, entry in results["variants"].items():
        if "criteria_auc" in entry:
            lines += ["", f"Criteria AUC ({name} variant, out-of-fold):", "", "| criterion | positives / known | AUC (95 %) |",
                      "|---|---|---|"]
            for out, value in entry["criteria_auc"].items():
                lines.append(f"| {out} | {value['positives']} / {value['images']} | {fmt(value['auc'])} |")
    return lines


if __name__ == "__main__":
    main()
