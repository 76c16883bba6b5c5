"""Evaluate a model on a LesionDataset subset: ISIC segmentation, classification and mAP.

``score_image`` scores one image; the investigate report (skinlesion.report)
uses it too, so the two agree image by image.
"""
import csv
import logging
import os

import numpy as np

from mrcnn.boxes import extract_bboxes
from mrcnn.metrics import compute_ap, compute_ap_range
from skinlesion import schemes, scoring
from skinlesion.inference import Predictor
from skinlesion.jsonio import write_json

log = logging.getLogger(__name__)

MAP_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def score_image(result, lesion_mask, gt_masks, gt_class_ids):
    """Score one image: its lesion mask by ISIC Task 1, its detections by mask AP.

    The one per-image scoring of ``--mode evaluate`` (evaluate_model) and of
    the investigate report, so both give the same numbers for the same model.
    result: a detect() dict (rois [P, 4], class_ids [P], scores [P], masks
        [H, W, P]); lesion_mask: bool [H, W], the image's predicted lesion
        (inference.lesion_mask or the test-time-augmentation vote);
        gt_masks: bool [H, W, G] truth instances; gt_class_ids: int [G].
    Returns: dict metrics (the 6 ISIC Task 1 metrics of lesion_mask against
        the union of gt_masks), ap50 (mask AP at IoU 0.5) and ap (mean AP over
        IoU 0.50:0.95), both NaN without a ground-truth instance, and
        detection_record (the mrcnn.metrics per-image record: gt_* and pred_*).
    """
    gt_masks = np.asarray(gt_masks, bool)
    gt_union = np.any(gt_masks, axis=-1) if gt_masks.shape[-1] else np.zeros(np.shape(lesion_mask), bool)
    record = {"gt_boxes": extract_bboxes(gt_masks), "gt_class_ids": np.asarray(gt_class_ids),
              "gt_masks": gt_masks, "pred_boxes": result["rois"], "pred_class_ids": result["class_ids"],
              "pred_scores": result["scores"], "pred_masks": result["masks"]}
    ap50 = ap = float("nan")
    if gt_masks.shape[-1]:
        args = [record[key] for key in ("gt_boxes", "gt_class_ids", "gt_masks", "pred_boxes",
                                        "pred_class_ids", "pred_scores", "pred_masks")]
        ap50 = compute_ap(*args, iou_threshold=0.5)[0]
        ap = compute_ap_range(*args, iou_thresholds=MAP_THRESHOLDS, verbose=0)
    return {"metrics": scoring.segmentation_metrics(gt_union, lesion_mask), "ap50": ap50, "ap": ap,
            "detection_record": record}


def evaluate_model(model, config, dataset, out_dir, progress=True, write_overlays=True, tta=False, refine=False):
    """Run the model over every image of dataset and score it.

    Writes the predict outputs (masks/, overlays/, predictions.json,
    probabilities.csv) to out_dir. Returns (metrics dict, per-image rows):
    metrics = {"segmentation": means of the 6 ISIC metrics, "detection":
    {"mAP50", "mAP"} (Matterport's per-image AP averaged over images),
    "classification": ISIC Task 3 scores when the scheme has > 1 class,
    "images": N, "skipped": [...], "low_confidence": n}; with an attribute
    scheme (isic2018_attributes) also "attributes": the ISIC 2018 Task 2
    score (skinlesion.scoring.task2_jaccard: Jaccard per attribute
    accumulated over the images, and their mean).
    """
    class_names = list(config.CLASS_NAMES)
    per_image, ap50, ap_range, truths, probs = [], [], [], [], []
    attributes = scoring.Task2Scorer(class_names[1:]) if schemes.is_attribute_scheme(config.CLASS_SCHEME) else None

    def score(source, result, lesion_mask, record):
        image_id = source[3]
        gt_masks, gt_class_ids = dataset.load_mask(image_id)
        if attributes is not None:
            attributes.add(*attribute_pair(dataset.image_info[image_id], result, class_names))
        scored = score_image(result, lesion_mask, gt_masks, gt_class_ids)
        row = {"image": record["stem"], **scored["metrics"], "low_confidence": record["low_confidence"],
               "detections": len(record["detections"])}
        if gt_masks.shape[-1]:
            ap50.append(scored["ap50"])
            ap_range.append(scored["ap"])
            row["ap50"] = round(float(scored["ap50"]), 6)
        label_id = dataset.image_info[image_id].get("class_id")
        if len(class_names) > 2 and label_id:
            truths.append(int(label_id) - 1)
            probs.append([record["probabilities"][c] for c in class_names[1:]])
            row["truth"] = class_names[int(label_id)]
            row["predicted"] = (class_names[1 + int(np.argmax(probs[-1]))]
                                if not record["no_detection"] else None)
        per_image.append(row)

    predictor = Predictor(model, class_names, out_dir, config.DETECTION_MIN_CONFIDENCE,
                          write_overlays=write_overlays, on_result=score, tta=tta, refine=refine)
    outcome = predictor.run(Predictor.dataset_sources(dataset), progress=progress)
    predictor.write_summary(outcome)
    metrics = {
        "images": len(per_image),
        "tta": bool(tta),
        "refine": bool(refine),
        "skipped": outcome["skipped"],
        "low_confidence": int(sum(r["low_confidence"] for r in outcome["images"])),
        "segmentation": scoring.mean_metrics([{k: r[k] for k in scoring.SEGMENTATION_METRICS} for r in per_image])
        if per_image else None,
        "detection": {"mAP50": _mean(ap50), "mAP": _mean(ap_range), "images": len(ap50),
                      "note": "Matterport-style per-image AP (all-point interpolation) averaged over images"},
    }
    if truths:
        metrics["classification"] = scoring.score_classification(np.array(truths), np.array(probs),
                                                                 class_names[1:])
    if attributes is not None:
        metrics["attributes"] = attributes.result()
    return metrics, per_image


def attribute_pair(info, result, class_names):
    """(truth, prediction) {attribute: bool [H, W]} of one image for ISIC 2018 Task 2 scoring.

    info: the image's LesionDataset image_info (``attribute_masks`` {attribute:
    path}: an attribute without a file is unknown, left out of truth);
    result: detect()'s dict (masks bool [H, W, N], class_ids [N]); the
    prediction of an attribute is the union of its class's detections.
    """
    from skinlesion.layouts import read_mask_bool
    # Read from the files again on purpose: load_mask's instances leave out components under
    # attribute_masks.MIN_COMPONENT_PIXELS, and the ISIC score counts every pixel of the mask.
    truth = {name: read_mask_bool(path) for name, path in (info.get("attribute_masks") or {}).items()}
    masks, class_ids = np.asarray(result["masks"], bool), np.asarray(result["class_ids"])
    prediction = {name: masks[..., class_ids == k].any(axis=-1) for k, name in enumerate(class_names) if k}
    return truth, prediction


def _mean(values):
    """Mean of the finite values, rounded to 6 digits; None when there is none."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    return round(float(np.mean(values)), 6) if values else None


def score_mask_folders(truth, predictions):
    """Score a folder of predicted ISIC-format masks against a folder of ground truth: (metrics, per_image).

    metrics: {"segmentation": means, "images", "missing", "skipped", "notes"}
    (skinlesion.scoring.score_mask_folders pairs the files). Raises
    ValueError naming --truth / --predictions when a folder is not given or absent.
    """
    if not (truth and predictions):
        raise ValueError("--truth and --predictions go together (two folders of ISIC-format masks)")
    for flag, folder in (("--truth", truth), ("--predictions", predictions)):
        if not os.path.isdir(folder):
            raise ValueError(f"{flag} {folder}: no such folder")
    result = scoring.score_mask_folders(truth, predictions)
    metrics = {"segmentation": result["mean"], "images": len(result["per_image"]),
               "missing": result.get("missing", []), "skipped": result.get("skipped", []),
               "notes": result.get("notes", [])}
    return metrics, result["per_image"]


def write_metrics(out, metrics, per_image):
    """Write metrics.json and per_image.csv into folder ``out`` and print a short table.

    metrics: evaluate's dict (segmentation, detection, classification, ...);
    per_image: one dict per image with at least the SEGMENTATION_METRICS.
    """
    write_json(os.path.join(out, "metrics.json"), metrics, indent=1)
    columns = ["image", *scoring.SEGMENTATION_METRICS]
    extra = sorted({k for row in per_image for k in row} - set(columns))
    with open(os.path.join(out, "per_image.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns + extra, extrasaction="ignore")
        writer.writeheader()
        for row in per_image:
            writer.writerow(row)
    seg = metrics.get("segmentation") or {}
    print(f"\n{'metric':<20}{'value':>10}")
    for key in scoring.SEGMENTATION_METRICS:
        value = seg.get(key)
        print(f"{key:<20}{value:>10.4f}" if value is not None else f"{key:<20}{'n/a':>10}")
    det = metrics.get("detection") or {}
    for key in ("mAP50", "mAP"):
        if det.get(key) is not None:
            print(f"{key:<20}{det[key]:>10.4f}")
    cls = metrics.get("classification") or {}
    if cls.get("balanced_accuracy") is not None:
        print(f"{'balanced_accuracy':<20}{cls['balanced_accuracy']:>10.4f}")
        print(f"{'mean_auc':<20}{(cls.get('mean_auc') or float('nan')):>10.4f}")
    task2 = metrics.get("attributes")
    if task2:
        for name, value in task2["jaccard"].items():
            print(f"{'jaccard_' + name:<20}{value:>10.4f}" if value is not None else f"{'jaccard_' + name:<20}{'n/a':>10}")
        if task2["mean_jaccard"] is not None:
            print(f"{'task2_mean_jaccard':<20}{task2['mean_jaccard']:>10.4f}")
    print(f"\nwritten: {out}/metrics.json, {out}/per_image.csv")
