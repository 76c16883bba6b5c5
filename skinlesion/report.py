"""The investigate report: one HTML page on the data, the anchors, the model's stages and its mistakes.

    from skinlesion.report import investigate
    summary = investigate(dataset, "logs/report", config, model=model)

writes ``OUT/index.html`` (self-contained: inline CSS, no script, no network;
figures are PNGs in ``OUT/figures/`` referenced by relative paths) and
``OUT/summary.json``, the Matterport inspect notebooks (data, anchors, RPN,
ROIs, detections, mAP, weights) in one page a person opens from disk.
Figures are drawn by skinlesion.report_figures.

Images that fail to load are skipped with one warning each and listed in
``summary["skipped"]``; a model that detects nothing still gets a report.
"""
import html
import json
import logging
import math
import os
import time

import numpy as np

from mrcnn import metrics as mrcnn_metrics
from mrcnn import visualize
from mrcnn.anchors import compute_backbone_shapes, get_anchors
from mrcnn.boxes import apply_box_deltas, denorm_boxes, extract_bboxes, norm_boxes
from mrcnn.data import build_rpn_targets, load_image_gt
from mrcnn.images import unmold_image
from skinlesion import report_figures as figures
from skinlesion.report_figures import note as _note, paragraph as _p, table as _table
from skinlesion import inference, scoring

log = logging.getLogger(__name__)

GRID_IMAGES = 8
WORST_IMAGES = 10
STAGE_BOXES = 50  # boxes drawn per stage panel; counts in the table are the full ones
WEIGHT_HISTOGRAMS = 6
# Layers whose weight histograms are shown (when present): one per part of the network.
HISTOGRAM_LAYERS = ("conv1", "res4a_branch2a", "fpn_p2", "rpn_conv_shared", "mrcnn_class_logits",
                    "mrcnn_mask", "res3a_branch2a", "mrcnn_bbox_fc")


# --------------------------------------------------------------------------- numpy helpers

def json_safe(value):
    """A copy of value that json.dump accepts: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def anchor_level_counts(config, image_shape):
    """Anchors per pyramid level for a molded image shape.

    Returns: list of dicts {level, stride, feature_shape [rows, cols], scale,
    locations, anchors}, P2 first; the anchors sum to len(get_anchors(...)).
    """
    shapes = compute_backbone_shapes(config, image_shape)
    step = config.RPN_ANCHOR_STRIDE
    per_location = len(config.RPN_ANCHOR_RATIOS)
    rows = []
    for level, (shape, stride, scale) in enumerate(zip(shapes, config.BACKBONE_STRIDES,
                                                       config.RPN_ANCHOR_SCALES), start=2):
        locations = len(range(0, int(shape[0]), step)) * len(range(0, int(shape[1]), step))
        rows.append({"level": f"P{level}", "stride": int(stride),
                     "feature_shape": [int(shape[0]), int(shape[1])], "scale": scale,
                     "locations": locations, "anchors": locations * per_location})
    return rows


def top_rpn_proposals(rpn_scores, rpn_deltas, anchors_norm, std_dev, limit):
    """Pre-NMS proposals: the top-scoring anchors refined by their RPN deltas (as ProposalLayer).

    rpn_scores: [A] foreground probabilities; rpn_deltas: [A, 4] as the RPN
    outputs them (divided by std_dev); anchors_norm: [A, 4] normalized;
    std_dev: RPN_BBOX_STD_DEV; limit: PRE_NMS_LIMIT.
    Returns: (indices int [K] best first, anchors [K, 4], refined [K, 4]
    normalized and clipped to [0, 1], scores [K]), K = min(limit, A).
    """
    order = np.argsort(-np.asarray(rpn_scores), kind="stable")[:min(int(limit), len(rpn_scores))]
    deltas = np.asarray(rpn_deltas)[order] * np.reshape(std_dev, [1, 4])
    refined = np.clip(apply_box_deltas(np.asarray(anchors_norm)[order], deltas), 0.0, 1.0)
    return order, np.asarray(anchors_norm)[order], refined, np.asarray(rpn_scores)[order]


def refine_rois(rois_norm, class_probs, class_deltas, std_dev, window_norm):
    """Classifier stage: each proposal's class, score and class-specific refined box.

    rois_norm: [N, 4] normalized (all-zero rows are padding); class_probs:
    [N, C]; class_deltas: [N, C, 4]; std_dev: BBOX_STD_DEV; window_norm: [4]
    normalized window of the real image.
    Returns: dict valid bool [N] (not padding), class_ids int [N], scores [N],
    refined [N, 4] normalized, clipped to the window.
    """
    rois_norm = np.asarray(rois_norm, np.float32)
    class_ids = np.argmax(class_probs, axis=1)
    rows = np.arange(len(class_ids))
    deltas = np.asarray(class_deltas)[rows, class_ids] * np.reshape(std_dev, [1, 4])
    refined = apply_box_deltas(rois_norm, deltas)
    wy1, wx1, wy2, wx2 = window_norm
    refined = np.stack([np.clip(refined[:, 0], wy1, wy2), np.clip(refined[:, 1], wx1, wx2),
                        np.clip(refined[:, 2], wy1, wy2), np.clip(refined[:, 3], wx1, wx2)], axis=1)
    return {"valid": np.any(rois_norm != 0, axis=1), "class_ids": class_ids,
            "scores": np.asarray(class_probs)[rows, class_ids], "refined": refined}


def match_detections(record, iou_threshold=0.5):
    """Which of one image's detections hit a ground-truth lesion.

    record: dict as for mrcnn.metrics.evaluate_detections (gt_* and pred_* arrays).
    Returns: (scores float [P] best first, hits bool [P], ground-truth count).
    """
    gt_match, pred_match, _ = mrcnn_metrics.compute_matches(
        record["gt_boxes"], record["gt_class_ids"], record["gt_masks"], record["pred_boxes"],
        record["pred_class_ids"], record["pred_scores"], record["pred_masks"], iou_threshold)
    # compute_matches drops all-zero (padding) boxes, then ranks by score: do the same.
    real = np.any(np.asarray(record["pred_boxes"]).reshape(-1, 4) != 0, axis=1)
    scores = np.sort(np.asarray(record["pred_scores"], np.float64)[real])[::-1]
    return scores, pred_match > -1, len(gt_match)


def pooled_precision_recall(matches):
    """Precision-recall of the detections of all images ranked together by score.

    matches: list of match_detections() triples, one per image.
    Returns: (precisions [K + 2] (interpolated envelope), recalls [K + 2],
    all-point AP or None when there is no ground truth).
    """
    truth_count = sum(count for _, _, count in matches)
    if truth_count == 0:
        return np.array([0.0, 0.0]), np.array([0.0, 1.0]), None
    scores = np.concatenate([np.zeros(0)] + [m[0] for m in matches])
    hits = np.concatenate([np.zeros(0, bool)] + [np.asarray(m[1], bool) for m in matches])
    true_positives = np.cumsum(hits[np.argsort(-scores, kind="stable")])
    precisions = np.concatenate([[0.0], true_positives / np.arange(1, len(hits) + 1), [0.0]])
    recalls = np.concatenate([[0.0], true_positives / truth_count, [1.0]])
    envelope = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.where(recalls[1:] != recalls[:-1])[0] + 1
    ap = float(np.sum((recalls[steps] - recalls[steps - 1]) * envelope[steps]))
    return envelope, recalls, ap


# --------------------------------------------------------------------------- the report

def _dataset_summary(dataset):
    """dataset.summary, or one rebuilt from image_info for a dataset not filled by load()."""
    if getattr(dataset, "summary", None):
        return dict(dataset.summary)
    counts = {}
    for info in dataset.image_info:
        counts[str(info.get("label"))] = counts.get(str(info.get("label")), 0) + 1
    return {"layout": "unknown", "subset": "unknown", "scheme": None, "images": len(dataset.image_info),
            "classes": counts, "skipped": []}


def _class_names(config):
    """Class names indexed by class id, "BG" first (LesionConfig.CLASS_NAMES, else the ids)."""
    names = getattr(config, "CLASS_NAMES", None)
    return list(names) if names else ["BG"] + [str(i) for i in range(1, config.NUM_CLASSES)]


def _sample_ids(dataset, max_images, seed):
    """Up to max_images image ids, a seeded sample in id order (all ids when there are few)."""
    ids = np.asarray(dataset.image_ids)
    if max_images is None or len(ids) <= max_images:
        return [int(i) for i in ids]
    chosen = np.random.default_rng(seed).choice(ids, size=int(max_images), replace=False)
    return [int(i) for i in np.sort(chosen)]


def _examine(dataset, image_ids, skipped, errors, model, class_names, min_confidence):
    """Load each image once: keep a thumbnail, its lesion area and, with a model, its scores.

    An image or mask that fails to load goes to skipped, a model failure on an
    image to errors (the image stays in the data sections), one warning each.
    Returns: list of dicts {id, stem, label, class_id, shape, area (lesion
    fraction), thumb, thumb_mask, thumb_box, prediction (_score_image) or None}.
    """
    samples = []
    for image_id in image_ids:
        info = dataset.image_info[image_id]
        name = str(info.get("stem") or image_id)
        step, where = "image", info.get("path", name)
        try:
            image = dataset.load_image(image_id)
            step, where = "mask", info.get("mask_path") or where
            masks = np.asarray(dataset.load_mask(image_id)[0], bool)
            mask = np.any(masks, axis=2) if masks.ndim == 3 else masks
        except Exception as err:  # noqa: BLE001 - one bad file must not stop the report
            log.warning("Skipping %s: %s cannot be loaded: %s", where, step, err)
            skipped.append({"file": str(where), "reason": f"{step}: {err}"})
            continue
        prediction = None
        if model is not None:
            try:
                prediction = _score_image(model, image, mask, int(info.get("class_id", 1)), class_names,
                                          min_confidence)
            except Exception as err:  # noqa: BLE001
                log.warning("Model failed on %s: %s", info.get("path", name), err)
                errors.append({"section": "detect", "image": name, "error": f"{type(err).__name__}: {err}"})
        thumb_mask = figures.thumbnail(mask, is_mask=True)
        samples.append({
            "id": image_id, "stem": name, "label": info.get("label"), "class_id": int(info.get("class_id", 1)),
            "shape": image.shape, "area": float(mask.mean()), "thumb": figures.thumbnail(image),
            "thumb_mask": thumb_mask,
            "thumb_box": extract_bboxes(thumb_mask[..., None])[0] if thumb_mask.any() else None,
            "prediction": prediction})
    return samples


def _score_image(model, image, mask, class_id, class_names, min_confidence):
    """Detect on one image and score it against its lesion mask (bool [H, W]).

    The predicted lesion and the image's class probabilities follow the
    predict / evaluate rule (skinlesion.inference), so the numbers match
    ``lesions.py --mode evaluate``.

    Returns: dict detections, top_score, top_class (most probable class or
    None without a detection), class_probs [K],
    thumb_prediction, metrics (ISIC Task 1), ap {mAP50, mAP} (None without a
    lesion) and matches (match_detections).
    """
    result = model.detect([image])[0]
    predicted, used, _ = inference.lesion_mask(result, min_confidence)
    class_probs = inference.image_probabilities(result, used, class_names)
    detected = len(result["scores"]) > 0
    out = {"detections": int(len(result["scores"])),
           "top_score": float(np.max(result["scores"])) if detected else None,
           "top_class": class_names[1 + int(np.argmax(class_probs))] if detected else None,
           "class_probs": class_probs,
           "thumb_prediction": figures.thumbnail(predicted, is_mask=True),
           "metrics": scoring.segmentation_metrics(mask, predicted)}
    record = {"gt_boxes": extract_bboxes(mask[..., None]), "gt_class_ids": np.array([class_id]),
              "gt_masks": mask[..., None], "pred_boxes": result["rois"], "pred_class_ids": result["class_ids"],
              "pred_scores": result["scores"], "pred_masks": result["masks"]}
    out["ap"] = mrcnn_metrics.evaluate_detections([record])
    out["matches"] = match_detections(record)
    return out


def _data_section(report, dataset, summary, subsets, samples):
    """Layout, counts per subset and class, skipped files, size and area histograms, a truth grid."""
    parts = report.section("data", "Data")
    class_names = list(summary["classes"])
    parts.append(_p(f"Layout {summary['layout']} at {summary.get('root', '?')}, subset "
                    f"{summary.get('subset')}, class scheme {summary.get('scheme')}: "
                    f"{summary['images']} images, {len(summary['skipped'])} files skipped."))
    rows = [[name, info["images"]] + [info["classes"].get(c, 0) for c in class_names] + [info["skipped"]]
            for name, info in subsets.items()]
    parts.append(_table(["subset", "images"] + class_names + ["skipped"], rows))
    if summary["skipped"]:
        parts.append("<h3>Skipped files</h3>")
        parts.append('<div class="scroll">' + _table(
            ["file", "reason"], [[s.get("file"), s.get("reason")] for s in summary["skipped"]]) + "</div>")
    else:
        parts.append(_note("No file was skipped."))

    widths = [info.get("width") for info in dataset.image_info if info.get("width")]
    heights = [info.get("height") for info in dataset.image_info if info.get("height")]
    if not widths:
        widths = [s["shape"][1] for s in samples]
        heights = [s["shape"][0] for s in samples]
    path = figures.size_histogram(np.asarray(widths), np.asarray(heights), report.path("image_sizes.png"))
    parts.append('<div class="row">' + report.figure(
        path, f"Width and height in pixels of the {len(widths)} images of the subset."))
    areas = [s["area"] for s in samples]
    path = figures.histogram(areas, report.path("lesion_areas.png"), "Lesion area",
                             "fraction of the image", value_range=(0, 1))
    parts.append(report.figure(path, f"Share of the image covered by the lesion, over {len(areas)} "
                                     "sampled images.") + "</div>")
    grid = [(s["thumb"], s["thumb_mask"], s["thumb_box"], f"{s['stem']}\n{s['label']}")
            for s in samples[:GRID_IMAGES]]
    path = figures.truth_grid(grid, report.path("ground_truth.png"))
    parts.append(report.figure(path, f"{len(grid)} images with their ground-truth mask (tint, outline) "
                                     "and box."))
    return {"lesion_area_mean": float(np.mean(areas)) if areas else None}


def _anchor_section(report, dataset, config, samples):
    """Anchor counts per level, one location's anchors per level, RPN targets of a sample."""
    parts = report.section("anchors", "Anchors and RPN targets")
    if not samples:
        parts.append(_note("No image could be loaded, so there are no anchors to show."))
        return {}, {}
    sample = samples[0]
    image, _, gt_class_ids, gt_boxes, _ = load_image_gt(dataset, config, sample["id"], use_mini_mask=False)
    levels = anchor_level_counts(config, image.shape)
    anchors_px = get_anchors(config, image.shape, normalized=False)
    parts.append(_p(f"Molded image {image.shape[1]}x{image.shape[0]}; {len(anchors_px)} anchors "
                    f"({len(config.RPN_ANCHOR_RATIOS)} ratios {list(config.RPN_ANCHOR_RATIOS)} per location, "
                    f"anchor stride {config.RPN_ANCHOR_STRIDE})."))
    parts.append(_table(["level", "stride", "feature map", "scale (px)", "locations", "anchors"],
                        [[r["level"], r["stride"], "x".join(map(str, r["feature_shape"])), r["scale"],
                          r["locations"], r["anchors"]] for r in levels]))
    per_level = figures.centre_anchors(anchors_px, [r["anchors"] for r in levels],
                                       len(config.RPN_ANCHOR_RATIOS), image.shape)
    path = figures.anchors_at_location(image, per_level, [f"{r['level']} scale {r['scale']}" for r in levels],
                                       report.path("anchors_centre.png"))
    parts.append(report.figure(path, "The anchors of the location nearest the image centre at each pyramid "
                                     "level (dotted white: the image border)."))

    rpn_match, rpn_bbox = build_rpn_targets(image.shape, anchors_px, gt_class_ids, gt_boxes, config)
    positive = np.where(rpn_match == 1)[0]
    negative = np.where(rpn_match == -1)[0]
    targets = {"positive": int(positive.size), "negative": int(negative.size),
               "neutral": int(np.sum(rpn_match == 0)), "image": sample["stem"]}
    refined = apply_box_deltas(anchors_px[positive], rpn_bbox[:positive.size] *
                               np.reshape(config.RPN_BBOX_STD_DEV, [1, 4]))
    parts.append("<h3>RPN targets</h3>")
    parts.append(_table(["image", "positive", "negative", "neutral (ignored)"],
                        [[targets["image"], targets["positive"], targets["negative"], targets["neutral"]]]))
    some_negatives = negative[np.linspace(0, len(negative) - 1, min(20, len(negative))).astype(int)]
    shown_negatives = anchors_px[some_negatives] if negative.size else np.zeros((0, 4))
    path = figures.rpn_targets(image, gt_boxes, anchors_px[positive], refined, shown_negatives,
                               report.path("rpn_targets.png"))
    parts.append(report.figure(path, "Training targets of the RPN for one image: positive anchors (IoU >= 0.7 "
                                     "or best for the truth box, dashed white), the same anchors moved by their "
                                     "target deltas onto the truth box, and some negatives (IoU < 0.3)."))
    return {r["level"]: r["anchors"] for r in levels}, targets


def _stage_section(report, dataset, model, config, sample):
    """Proposals before and after NMS, refined ROIs and detections of one image; counts per stage."""
    parts = report.section("stages", "Model stages")
    image = dataset.load_image(sample["id"])
    out, molded, _, windows = model.run_inference([image])
    molded_image = unmold_image(molded[0], config)
    shape = molded_image.shape
    anchors_norm = model.get_anchors(shape)
    _, top_anchors, top_refined, _ = top_rpn_proposals(
        out["rpn_class"][0][:, 1], out["rpn_bbox"][0], anchors_norm, config.RPN_BBOX_STD_DEV,
        config.PRE_NMS_LIMIT)
    rois = out["rpn_rois"][0]
    window_norm = norm_boxes(np.asarray(windows[0]), shape[:2])
    classified = refine_rois(rois, out["mrcnn_class"][0], out["mrcnn_bbox"][0], config.BBOX_STD_DEV,
                             window_norm)
    foreground = np.where(classified["valid"] & (classified["class_ids"] > 0))[0]
    foreground = foreground[np.argsort(-classified["scores"][foreground], kind="stable")]
    raw = out["detections"][0]
    boxes, class_ids, scores, masks, _ = model.unmold_detections(
        raw, out["mrcnn_mask"][0], image.shape, shape, windows[0], out["detection_probs"][0])
    post_nms = rois[np.any(rois != 0, axis=1)]
    counts = {"anchors": int(len(anchors_norm)), "pre_nms": int(len(top_anchors)),
              "post_nms": int(len(post_nms)), "rois_foreground": int(len(foreground)),
              "detections": int(len(scores))}

    def px(boxes_norm):
        return denorm_boxes(np.asarray(boxes_norm).reshape(-1, 4), shape[:2])
    shown = STAGE_BOXES
    panels = [
        (molded_image, px(top_anchors[:shown]), px(top_refined[:shown]),
         f"top {min(shown, len(top_anchors))} of {len(top_anchors)} before NMS"),
        (molded_image, px(post_nms[:shown]), None,
         f"top {min(shown, len(post_nms))} of {len(post_nms)} after NMS"),
        (molded_image, px(rois[foreground[:shown]]), px(classified["refined"][foreground[:shown]]),
         f"{len(foreground)} foreground ROIs refined"),
    ]
    path = figures.stage_panels(panels, report.path("stages.png"))
    parts.append(_p(f"Image {sample['stem']} ({sample['label']}), as the model sees it "
                    f"({shape[1]}x{shape[0]})."))
    parts.append(_table(["stage", "boxes", "what it is"], [
        ["anchors", counts["anchors"], "every anchor of the pyramid"],
        ["RPN before NMS", counts["pre_nms"], f"top PRE_NMS_LIMIT={config.PRE_NMS_LIMIT} anchors by RPN score, "
                                              "refined by their deltas"],
        ["RPN after NMS", counts["post_nms"],
         f"proposals kept by NMS at IoU {config.RPN_NMS_THRESHOLD} (at most "
         f"POST_NMS_ROIS_INFERENCE={config.POST_NMS_ROIS_INFERENCE})"],
        ["foreground ROIs", counts["rois_foreground"], "proposals the classifier calls a lesion class"],
        ["detections", counts["detections"], f"after score >= {config.DETECTION_MIN_CONFIDENCE} and per-class "
                                             f"NMS (at most {config.DETECTION_MAX_INSTANCES})"],
    ]))
    parts.append(report.figure(path, "Left to right: the best anchors moved by the RPN's deltas (grey dotted: "
                                     "the anchors), the proposals that survive NMS, and the proposals the "
                                     "classifier keeps as lesions, moved by its class-specific deltas."))
    class_names = _class_names(config)
    path = figures.detections(image, boxes, masks, class_ids, scores, class_names,
                              report.path("detections.png"), f"{len(scores)} detections")
    parts.append(report.figure(path, "Final detections with their masks, class and score on the original image."))
    return counts


def _results_section(report, config, samples):
    """Segmentation, detection and classification scores, their curves, and the worst images."""
    parts = report.section("results", "Results")
    scored = [s for s in samples if s["prediction"] is not None]
    out = {}
    if not scored:
        parts.append(_note("The model failed on every image (see the log), so nothing is scored."))
    else:
        per_image = []
        for sample in scored:
            prediction = sample["prediction"]
            row = {"image": sample["stem"], "label": sample["label"], "predicted": prediction["top_class"],
                   "score": prediction["top_score"], "detections": prediction["detections"]}
            row.update(prediction["metrics"])
            row.update(AP50=prediction["ap"]["mAP50"], AP=prediction["ap"]["mAP"])
            per_image.append(row)
        mean = scoring.mean_metrics(per_image)
        with_truth = [r for r in per_image if r["AP50"] is not None]
        detection = {"mAP50": float(np.mean([r["AP50"] for r in with_truth])) if with_truth else None,
                     "mAP": float(np.mean([r["AP"] for r in with_truth])) if with_truth else None,
                     "images": len(with_truth)}
        out["segmentation"], out["detection"] = mean, detection
        parts.append(_p(f"{len(per_image)} images scored as lesions.py --mode evaluate scores them: the "
                        "predicted lesion is the top detection's mask joined with the masks of other "
                        "detections that overlap it; no detection means an empty mask."))
        parts.append(_table(["Jaccard", "thresholded Jaccard (0.65)", "Dice", "sensitivity", "specificity",
                             "accuracy", "mAP@0.5", "mAP@[.5:.95]"],
                            [[mean[k] for k in scoring.SEGMENTATION_METRICS] +
                             [detection["mAP50"], detection["mAP"]]]))
        precisions, recalls, pooled_ap = pooled_precision_recall([s["prediction"]["matches"] for s in scored])
        path = figures.precision_recall(precisions, recalls, pooled_ap, report.path("precision_recall.png"))
        parts.append('<div class="row">' + report.figure(
            path, "Precision against recall of all detections ranked together (mask IoU >= 0.5, class must "
                  "match); mAP in the table is the mean of per-image APs, as Matterport computes it."))
        path = figures.histogram([r["jaccard"] for r in per_image], report.path("jaccard_histogram.png"),
                                 "Per-image Jaccard", "Jaccard index", value_range=(0, 1))
        parts.append(report.figure(path, "Per-image Jaccard index; the thresholded Jaccard counts those "
                                         "below 0.65 as 0.") + "</div>")
        order = sorted(range(len(per_image)), key=lambda i: per_image[i]["jaccard"])
        worst = order[:WORST_IMAGES]
        rows = []
        for i in worst:
            row, sample = per_image[i], scored[i]
            title = (f"{row['image']}  J={row['jaccard']:.2f}\n{row['label']} -> {row['predicted'] or 'nothing'}"
                     + (f" {row['score']:.2f}" if row["score"] is not None else ""))
            rows.append((sample["thumb"], sample["thumb_mask"], sample["prediction"]["thumb_prediction"], title))
        path = figures.worst_cases(rows, report.path("worst.png"))
        parts.append("<h3>Worst images</h3>")
        parts.append(report.figure(path, f"The {len(rows)} images with the lowest Jaccard: image, truth "
                                         "(green) and prediction (orange), with the predicted class and the "
                                         "top detection's score."))
        out["worst"] = [{key: per_image[i][key] for key in ("image", "jaccard", "dice", "label", "predicted",
                                                            "score")} for i in worst]
        out["per_image"] = per_image
        parts.append("<h3>Per image</h3>")
        parts.append('<div class="scroll">' + _table(
            ["image", "truth", "predicted", "score", "detections", "Jaccard", "Dice", "AP@0.5"],
            [[per_image[i][k] for k in ("image", "label", "predicted", "score", "detections", "jaccard", "dice",
                                        "AP50")] for i in order]) + "</div>")

    class_names = _class_names(config)[1:]
    if len(class_names) > 1 and scored:
        out["classification"] = _classification(report, parts, class_names, scored)
    return out


def _classification(report, parts, class_names, samples):
    """Task 3 scores, a confusion matrix and ROC curves from each image's class probabilities."""
    from sklearn.metrics import confusion_matrix, roc_curve

    truth = np.array([s["class_id"] - 1 for s in samples])
    probs = np.stack([s["prediction"]["class_probs"] for s in samples])
    scores = scoring.score_classification(truth, probs, class_names)
    none = len(class_names)  # column of images without a detection
    predicted = np.array([int(np.argmax(p)) if s["prediction"]["detections"] else none
                          for p, s in zip(probs, samples)])
    matrix = confusion_matrix(truth, predicted, labels=list(range(none + 1)))[:none]

    def shown(value):
        return "undefined" if value is None else f"{value:.3f}"
    parts.append("<h3>Classification</h3>")
    parts.append(_p("Each image's class probabilities are those of its lesion's detections (score-weighted, "
                    "background left out; uniform without a detection): balanced accuracy "
                    f"{shown(scores['balanced_accuracy'])}, mean AUC {shown(scores['mean_auc'])}."))
    parts.append(_table(["class", "AUC", "AP", "sensitivity", "specificity", "positives"],
                        [[n, m["auc"], m["ap"], m["sensitivity"], m["specificity"], m["positives"]]
                         for n, m in scores["per_class"].items()]))
    path = figures.confusion(matrix, class_names, class_names + ["no detection"], report.path("confusion.png"))
    parts.append('<div class="row">' + report.figure(path, "Confusion matrix: rows are the true classes, "
                                                           "columns the most probable class."))
    curves = []
    for column, name in enumerate(class_names):
        positives = truth == column
        if positives.any() and (~positives).any():
            fpr, tpr, _ = roc_curve(positives, probs[:, column])
            curves.append((name, fpr, tpr, scores["auc"][name]))
    path = figures.roc(curves, report.path("roc.png"))
    parts.append(report.figure(path, "One-vs-rest ROC curve of each class with both positive and negative "
                                     "images.") + "</div>")
    for note in scores["notes"]:
        parts.append(_note(note))
    return {"balanced_accuracy": scores["balanced_accuracy"], "mean_auc": scores["mean_auc"],
            "mean_ap": scores["mean_ap"], "auc": scores["auc"], "confusion": matrix.tolist(),
            "confusion_columns": class_names + ["no detection"]}


def _weight_section(report, model):
    """Per-weight statistics (flagged ones first) and histograms of a few layers."""
    parts = report.section("weights", "Weights")
    keras_model = getattr(model, "keras_model", model)
    stats = visualize.weight_stats(keras_model)
    flagged = [{"layer": s["layer"], "weight": s["weight"], "flags": s["flags"]} for s in stats if s["flags"]]
    layer_names = sorted({s["layer"] for s in stats})
    if flagged:
        log.warning("Weights with NaN / exploding / dead values: %s", [f["weight"] for f in flagged])
        parts.append(f'<p class="bad">{len(flagged)} weight tensors are flagged (NaN, exploding above 1000 '
                     "or a constant kernel): training diverged or these layers never trained.</p>")
    else:
        parts.append(_p(f"{len(stats)} weight tensors in {len(layer_names)} layers; none holds NaN, "
                        "values above 1000 or a constant kernel."))
    ordered = sorted(stats, key=lambda s: not s["flags"])
    parts.append('<div class="scroll">' + _table(
        ["layer", "weight", "shape", "min", "max", "std", "flags"],
        [[s["layer"], s["weight"], "x".join(map(str, s["shape"])), s["min"], s["max"], s["std"],
          " ".join(s["flags"])] for s in ordered]) + "</div>")
    wanted = [f["layer"] for f in flagged][:WEIGHT_HISTOGRAMS // 2] + list(HISTOGRAM_LAYERS)
    values = figures.layer_weights(keras_model, set(wanted))
    flagged_layers = {f["layer"] for f in flagged}
    chosen = []
    for name in wanted:
        if name in values and name not in [c[0] for c in chosen]:
            chosen.append((name, values[name], name in flagged_layers))
    path = figures.weight_histograms(chosen[:WEIGHT_HISTOGRAMS], report.path("weight_histograms.png"))
    parts.append(report.figure(path, "Weight histograms of a few layers from the backbone to the heads "
                                     "(red: flagged)."))
    return {"layers": len(layer_names), "tensors": len(stats), "flagged": flagged}


def _subset_counts(summary, subset_summaries, extra_summaries):
    """{subset: {images, classes, skipped}} from this dataset's summary and the others given."""
    given = dict(subset_summaries or {})
    for other in extra_summaries or []:
        given.setdefault(other.get("subset", f"other{len(given)}"), other)
    given[summary.get("subset", "this")] = summary
    order = ["train", "val", "test", "all"]
    names = sorted(given, key=lambda n: (order.index(n) if n in order else len(order), str(n)))
    return {name: {"images": int(given[name].get("images", 0)), "classes": dict(given[name].get("classes", {})),
                   "skipped": len(given[name].get("skipped", []))} for name in names}


def investigate(dataset, out_dir, config, model=None, max_images=50, title=None, subset_summaries=None,
                extra_summaries=None, seed=0):
    """Write an HTML report on a dataset (and a model) to out_dir; return its summary dict.

    dataset: a prepared LesionDataset (its ``summary`` from load()).
    out_dir: folder for index.html, summary.json and figures/ (created).
    config: the inference LesionConfig (IMAGES_PER_GPU=1).
    model: a MaskRCNN in inference mode with weights loaded, or None for the
        data and anchor sections only.
    max_images: images examined (a seeded sample when the subset is larger).
    title: page title (default names the layout and subset).
    subset_summaries: {subset: summary} of other subsets, for the counts table;
        extra_summaries: the same as a list of summaries.
    seed: seed of the image sample.

    Returns the dict written to summary.json: layout, images, classes,
    skipped, subsets, anchors {level: count}, rpn_targets {positive,
    negative, neutral}; with a model also stages, segmentation, detection,
    classification (more than one class), weights, worst, per_image.
    """
    started = time.time()
    report = figures.Page(out_dir)
    summary = _dataset_summary(dataset)
    skipped = [dict(s) for s in summary.get("skipped", [])]
    image_ids = _sample_ids(dataset, max_images, seed)
    class_names = _class_names(config)
    begin, errors = time.time(), []
    samples = _examine(dataset, image_ids, skipped, errors, model, class_names,
                       config.DETECTION_MIN_CONFIDENCE)
    result = {"layout": summary.get("layout"), "subset": summary.get("subset"), "scheme": summary.get("scheme"),
              "root": summary.get("root"), "images": int(summary.get("images", len(dataset.image_ids))),
              "classes": dict(summary.get("classes", {})), "skipped": skipped,
              "subsets": _subset_counts(summary, subset_summaries, extra_summaries),
              "sampled_images": len(samples)}
    summary_for_page = dict(summary, skipped=skipped)
    timings = {"examine": round(time.time() - begin, 2)}

    def timed(name, function, *args, failed=None):
        """Run one section; a failure is logged and noted on the page, and the report goes on."""
        begin = time.time()
        try:
            value = function(*args)
        except Exception as err:  # noqa: BLE001 - one broken section must not lose the others
            log.exception("investigate: the %s section failed", name)
            errors.append({"section": name, "error": f"{type(err).__name__}: {err}"})
            report.section(f"{name}-error", f"{name.capitalize()} (failed)").append(
                f'<p class="bad">This section failed: {html.escape(type(err).__name__)}: '
                f"{html.escape(str(err))}</p>")
            value = failed
        timings[name] = round(time.time() - begin, 2)
        return value

    result.update(timed("data", _data_section, report, dataset, summary_for_page, result["subsets"], samples,
                        failed={}))
    result["anchors"], result["rpn_targets"] = timed("anchors", _anchor_section, report, dataset, config,
                                                     samples, failed=({}, {}))
    if model is None:
        parts = report.section("model", "Model")
        parts.append(_note("No model was given, so the model stages, results and weights are not shown; "
                           "pass --weights to see them."))
    elif not samples:
        report.section("model", "Model").append(_note("No image could be loaded, so the model was not run."))
    else:
        result["stages"] = timed("stages", _stage_section, report, dataset, model, config, samples[0],
                                 failed={})
        result.update(timed("results", _results_section, report, config, samples, failed={}))
        result["weights"] = timed("weights", _weight_section, report, model, failed={})
    result["seconds"] = round(time.time() - started, 2)
    result["timings"] = timings
    result["errors"] = errors
    page_title = title or f"Investigation: {result['layout']} {result['subset']} ({result['scheme']})"
    meta = (f"Written {time.strftime('%Y-%m-%d %H:%M')} in {result['seconds']:.1f} s; "
            f"{result['sampled_images']} images examined. All numbers: ")
    result["report"] = report.write(page_title, meta)
    result = json_safe(result)
    with open(os.path.join(report.out_dir, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2, allow_nan=False)
    log.info("Investigate report written to %s (%d figures, %.1f s)", result["report"], len(report.figures),
             result["seconds"])
    return result
