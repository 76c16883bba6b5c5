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
from skinlesion import scoring

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


def centre_anchors(anchors_px, level_counts, per_location, image_shape):
    """The anchors of the location nearest the image centre, per level.

    anchors_px: [A, 4] pixels, level by level, per_location consecutive anchors
    per location. Returns: list of [per_location, 4] arrays, one per level.
    """
    centre = np.array(image_shape[:2], np.float64) / 2
    result, start = [], 0
    for count in level_counts:
        level = anchors_px[start:start + count]
        start += count
        centres = (level[:, :2] + level[:, 2:]) / 2
        nearest = int(np.argmin(np.sum((centres - centre) ** 2, axis=1)))
        location = nearest // per_location
        result.append(level[location * per_location:(location + 1) * per_location])
    return result


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


def lesion_mask(result, image_shape):
    """One lesion mask from an image's detections.

    The top-scoring detection's mask united with the masks of detections whose
    boxes overlap its box (a lesion split into pieces); all False without
    detections. result: detect()'s dict (rois [N, 4] pixels, scores [N],
    masks bool [H, W, N]). Returns: bool [H, W].
    """
    masks = np.asarray(result["masks"], bool)
    if masks.ndim != 3 or masks.shape[-1] == 0:
        return np.zeros(image_shape[:2], bool)
    top = int(np.argmax(result["scores"]))
    boxes = np.asarray(result["rois"])
    y1, x1, y2, x2 = boxes[top]
    overlapping = ((np.minimum(boxes[:, 2], y2) > np.maximum(boxes[:, 0], y1))
                   & (np.minimum(boxes[:, 3], x2) > np.maximum(boxes[:, 1], x1)))
    overlapping[top] = True
    return np.any(masks[:, :, overlapping], axis=2)


def image_class_probs(result, class_count):
    """Class probabilities of an image: the top detection's softmax without background, renormalized.

    result: detect()'s dict with scores [N] and probs [N, 1 + class_count].
    Returns: float [class_count]; uniform (undecided) when nothing was detected.
    """
    probs = np.asarray(result.get("probs", np.zeros((0, class_count + 1))))
    if len(result["scores"]) == 0 or probs.shape[0] == 0:
        return np.full(class_count, 1.0 / class_count)
    row = probs[int(np.argmax(result["scores"]))][1:].astype(np.float64)
    return row / row.sum() if row.sum() > 0 else np.full(class_count, 1.0 / class_count)


def pooled_precision_recall(records, iou_threshold=0.5):
    """Precision-recall of all detections of all images ranked together by score.

    records: per-image dicts as for mrcnn.metrics.evaluate_detections.
    Returns: (precisions [K + 2], recalls [K + 2], all-point AP or None without truth).
    """
    scores, hits, truth_count = [], [], 0
    for record in records:
        gt_match, pred_match, _ = mrcnn_metrics.compute_matches(
            record["gt_boxes"], record["gt_class_ids"], record["gt_masks"], record["pred_boxes"],
            record["pred_class_ids"], record["pred_scores"], record["pred_masks"], iou_threshold)
        truth_count += len(gt_match)
        ranked = np.sort(np.asarray(record["pred_scores"], np.float64))[::-1][:len(pred_match)]
        scores.extend(ranked)
        hits.extend(pred_match > -1)
    if truth_count == 0:
        return np.array([0.0, 0.0]), np.array([0.0, 1.0]), None
    order = np.argsort(-np.asarray(scores), kind="stable")
    hit = np.asarray(hits, bool)[order]
    true_positives = np.cumsum(hit)
    precisions = true_positives / np.arange(1, len(hit) + 1)
    recalls = true_positives / truth_count
    precisions = np.concatenate([[0.0], precisions, [0.0]])
    recalls = np.concatenate([[0.0], recalls, [1.0]])
    envelope = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.where(recalls[1:] != recalls[:-1])[0] + 1
    ap = float(np.sum((recalls[steps] - recalls[steps - 1]) * envelope[steps]))
    return envelope, recalls, ap


# --------------------------------------------------------------------------- the report

class _Report:
    """Collects the sections (HTML fragments) and figures of one report."""

    def __init__(self, out_dir):
        self.out_dir = os.path.abspath(out_dir)
        self.figure_dir = os.path.join(self.out_dir, "figures")
        os.makedirs(self.figure_dir, exist_ok=True)
        self.sections = []  # (anchor id, title, [html parts])
        self.figures = []

    def section(self, anchor, title):
        """Start a section; returns its list of HTML parts to append to."""
        parts = []
        self.sections.append((anchor, title, parts))
        return parts

    def path(self, name):
        """Absolute path of a figure file."""
        return os.path.join(self.figure_dir, name)

    def figure(self, path, caption):
        """HTML of a saved figure with its one-sentence caption."""
        relative = "figures/" + os.path.basename(path)
        self.figures.append(relative)
        return (f'<figure><img src="{html.escape(relative)}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(header, rows, css_class=""):
    """An HTML table; cells are escaped, floats shown with 3 decimals, None as a dash."""
    def cell(value):
        if value is None:
            return "&ndash;"
        if isinstance(value, (float, np.floating)):
            return "&ndash;" if not math.isfinite(value) else f"{value:.3f}"
        return html.escape(str(value))
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    klass = f' class="{css_class}"' if css_class else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _note(text):
    return f'<p class="note">{html.escape(text)}</p>'


def _p(text):
    return f"<p>{html.escape(text)}</p>"


def _dataset_summary(dataset):
    """dataset.summary, or one rebuilt from image_info for a dataset not filled by load()."""
    if getattr(dataset, "summary", None):
        return dict(dataset.summary)
    counts = {}
    for info in dataset.image_info:
        counts[str(info.get("label"))] = counts.get(str(info.get("label")), 0) + 1
    return {"layout": "unknown", "subset": "unknown", "scheme": None, "images": len(dataset.image_info),
            "classes": counts, "skipped": []}


def _sample_ids(dataset, max_images, seed):
    """Up to max_images image ids, a seeded sample in id order (all ids when there are few)."""
    ids = np.asarray(dataset.image_ids)
    if max_images is None or len(ids) <= max_images:
        return [int(i) for i in ids]
    chosen = np.random.default_rng(seed).choice(ids, size=int(max_images), replace=False)
    return [int(i) for i in np.sort(chosen)]


def _load_samples(dataset, image_ids, skipped):
    """Load image, mask and class of each id; failures go to skipped with one warning each.

    Returns: list of dicts {id, stem, label, class_id, image, mask (bool [H, W] or None), box}.
    """
    samples = []
    for image_id in image_ids:
        info = dataset.image_info[image_id]
        name = info.get("stem") or info.get("id") or str(image_id)
        try:
            image = dataset.load_image(image_id)
        except Exception as err:  # noqa: BLE001 - any decoding failure skips the image
            log.warning("Skipping %s: image cannot be loaded: %s", info.get("path", name), err)
            skipped.append({"file": str(info.get("path", name)), "reason": f"image: {err}"})
            continue
        mask = None
        if info.get("layout") == "synthetic" or info.get("mask_path"):
            try:
                masks, _ = dataset.load_mask(image_id)
                mask = np.any(np.asarray(masks, bool), axis=2) if np.ndim(masks) == 3 else np.asarray(masks, bool)
            except Exception as err:  # noqa: BLE001
                log.warning("Skipping %s: mask cannot be loaded: %s", info.get("mask_path", name), err)
                skipped.append({"file": str(info.get("mask_path") or name), "reason": f"mask: {err}"})
                continue
        box = extract_bboxes(mask[..., None])[0] if mask is not None and mask.any() else None
        samples.append({"id": image_id, "stem": str(name), "label": info.get("label"),
                        "class_id": int(info.get("class_id", 1)), "image": image, "mask": mask, "box": box})
    return samples


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
        widths = [s["image"].shape[1] for s in samples]
        heights = [s["image"].shape[0] for s in samples]
    path = figures.size_histogram(np.asarray(widths), np.asarray(heights), report.path("image_sizes.png"))
    parts.append('<div class="row">' + report.figure(
        path, f"Width and height in pixels of the {len(widths)} images of the subset."))
    areas = [float(s["mask"].mean()) for s in samples if s["mask"] is not None]
    path = figures.histogram(areas, report.path("lesion_areas.png"), "Lesion area",
                             "fraction of the image", value_range=(0, 1))
    parts.append(report.figure(path, f"Share of the image covered by the lesion, over {len(areas)} "
                                     "sampled images (ISIC lesions cover about 5-70%).") + "</div>")
    grid = [(s["image"], s["mask"], s["box"], f"{s['stem']}\n{s['label']}") for s in samples[:GRID_IMAGES]]
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
    image, _, gt_class_ids, gt_boxes, _ = load_image_gt(dataset, config, samples[0]["id"], use_mini_mask=False)
    levels = anchor_level_counts(config, image.shape)
    anchors_px = get_anchors(config, image.shape, normalized=False)
    parts.append(_p(f"Molded image {image.shape[1]}x{image.shape[0]}; {len(anchors_px)} anchors "
                    f"({len(config.RPN_ANCHOR_RATIOS)} ratios {list(config.RPN_ANCHOR_RATIOS)} per location, "
                    f"anchor stride {config.RPN_ANCHOR_STRIDE})."))
    parts.append(_table(["level", "stride", "feature map", "scale (px)", "locations", "anchors"],
                        [[r["level"], r["stride"], "x".join(map(str, r["feature_shape"])), r["scale"],
                          r["locations"], r["anchors"]] for r in levels]))
    per_level = centre_anchors(anchors_px, [r["anchors"] for r in levels], len(config.RPN_ANCHOR_RATIOS),
                               image.shape)
    path = figures.anchors_at_location(image, per_level, [f"{r['level']} scale {r['scale']}" for r in levels],
                                       report.path("anchors_centre.png"))
    parts.append(report.figure(path, "The anchors of the location nearest the image centre at each pyramid "
                                     "level (dotted white: the image border)."))

    rpn_match, rpn_bbox = build_rpn_targets(image.shape, anchors_px, gt_class_ids, gt_boxes, config)
    positive = np.where(rpn_match == 1)[0]
    negative = np.where(rpn_match == -1)[0]
    targets = {"positive": int(positive.size), "negative": int(negative.size),
               "neutral": int(np.sum(rpn_match == 0)), "image": samples[0]["stem"]}
    refined = apply_box_deltas(anchors_px[positive], rpn_bbox[:positive.size] *
                               np.reshape(config.RPN_BBOX_STD_DEV, [1, 4]))
    parts.append("<h3>RPN targets</h3>")
    parts.append(_table(["image", "positive", "negative", "neutral (ignored)"],
                        [[targets["image"], targets["positive"], targets["negative"], targets["neutral"]]]))
    shown_negatives = anchors_px[negative[np.linspace(0, len(negative) - 1, min(20, len(negative))).astype(int)]] \
        if negative.size else np.zeros((0, 4))
    path = figures.rpn_targets(image, gt_boxes, anchors_px[positive], refined, shown_negatives,
                               report.path("rpn_targets.png"))
    parts.append(report.figure(path, "Training targets of the RPN for one image: positive anchors (IoU >= 0.7 "
                                     "or best for the truth box, dashed white), the same anchors moved by their "
                                     "target deltas onto the truth box, and some negatives (IoU < 0.3)."))
    return {r["level"]: r["anchors"] for r in levels}, targets


def _stage_section(report, model, config, sample):
    """Proposals before and after NMS, refined ROIs and detections of one image; counts per stage."""
    parts = report.section("stages", "Model stages")
    out, molded, _, windows = model.run_inference([sample["image"]])
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
        raw, out["mrcnn_mask"][0], sample["image"].shape, shape, windows[0], out["detection_probs"][0])
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
        (molded_image, px(post_nms[:shown]), None, f"top {min(shown, len(post_nms))} of {len(post_nms)} after NMS"),
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
        ["RPN after NMS", counts["post_nms"], f"proposals kept by NMS at IoU {config.RPN_NMS_THRESHOLD} "
                                              f"(at most POST_NMS_ROIS_INFERENCE={config.POST_NMS_ROIS_INFERENCE})"],
        ["foreground ROIs", counts["rois_foreground"], "proposals the classifier calls a lesion class"],
        ["detections", counts["detections"], f"after score >= {config.DETECTION_MIN_CONFIDENCE} and per-class "
                                             f"NMS (at most {config.DETECTION_MAX_INSTANCES})"],
    ]))
    parts.append(report.figure(path, "Left to right: the best anchors moved by the RPN's deltas (grey dotted: "
                                     "the anchors), the proposals that survive NMS, and the proposals the "
                                     "classifier keeps as lesions, moved by its class-specific deltas."))
    class_names = list(config.CLASS_NAMES) if hasattr(config, "CLASS_NAMES") else \
        ["BG"] + [str(i) for i in range(1, config.NUM_CLASSES)]
    path = figures.detections(sample["image"], boxes, masks, class_ids, scores, class_names,
                              report.path("detections.png"), f"{len(scores)} detections")
    parts.append(report.figure(path, "Final detections with their masks, class and score on the original image."))
    return counts


def _predict(model, samples):
    """detect() on each sample, one image at a time; returns [(sample, result)]."""
    results = []
    for sample in samples:
        result = model.detect([sample["image"]])[0]
        results.append((sample, result))
    return results


def _results_section(report, config, predictions):
    """Segmentation, detection and classification scores, their curves, and the worst images."""
    parts = report.section("results", "Results")
    scored = [(s, r) for s, r in predictions if s["mask"] is not None]
    out = {}
    if not scored:
        parts.append(_note("No image of this subset has a ground-truth mask, so nothing is scored."))
    else:
        per_image, records = [], []
        for sample, result in scored:
            predicted = lesion_mask(result, sample["image"].shape)
            row = {"image": sample["stem"], "label": sample["label"]}
            row.update(scoring.segmentation_metrics(sample["mask"], predicted))
            top = int(np.argmax(result["scores"])) if len(result["scores"]) else None
            row["detections"] = int(len(result["scores"]))
            row["top_score"] = float(result["scores"][top]) if top is not None else None
            row["top_class"] = config.CLASS_NAMES[int(result["class_ids"][top])] if top is not None else None
            row["_prediction"], row["_sample"] = predicted, sample
            per_image.append(row)
            truth = sample["mask"][..., None]
            records.append({"gt_boxes": extract_bboxes(truth), "gt_class_ids": np.array([sample["class_id"]]),
                            "gt_masks": truth, "pred_boxes": result["rois"], "pred_class_ids": result["class_ids"],
                            "pred_scores": result["scores"], "pred_masks": result["masks"]})
        mean = scoring.mean_metrics(per_image)
        detection = mrcnn_metrics.evaluate_detections(records)
        out["segmentation"] = mean
        out["detection"] = {"mAP50": detection["mAP50"], "mAP": detection["mAP"], "images": detection["images"]}
        parts.append(_p(f"{len(per_image)} images scored. The predicted lesion is the top detection's mask "
                        "joined with the masks of detections whose boxes overlap it; no detection means an "
                        "empty mask."))
        parts.append(_table(["Jaccard", "thresholded Jaccard (0.65)", "Dice", "sensitivity", "specificity",
                             "accuracy", "mAP@0.5", "mAP@[.5:.95]"],
                            [[mean[k] for k in scoring.SEGMENTATION_METRICS] +
                             [detection["mAP50"], detection["mAP"]]]))
        precisions, recalls, pooled_ap = pooled_precision_recall(records)
        path = figures.precision_recall(precisions, recalls, pooled_ap, report.path("precision_recall.png"))
        parts.append('<div class="row">' + report.figure(
            path, "Precision against recall of all detections ranked together (mask IoU >= 0.5, class must "
                  "match); mAP in the table is the mean of per-image APs, as Matterport computes it."))
        path = figures.histogram([r["jaccard"] for r in per_image], report.path("jaccard_histogram.png"),
                                 "Per-image Jaccard", "Jaccard index", value_range=(0, 1))
        parts.append(report.figure(path, "Per-image Jaccard index; the ISIC score counts those below 0.65 as 0.")
                     + "</div>")
        worst = sorted(per_image, key=lambda r: r["jaccard"])[:WORST_IMAGES]
        rows = [(r["_sample"]["image"], r["_sample"]["mask"], r["_prediction"],
                 f"{r['image']}  J={r['jaccard']:.2f}\n{r['label']} -> {r['top_class'] or 'nothing'}"
                 + (f" {r['top_score']:.2f}" if r["top_score"] is not None else "")) for r in worst]
        path = figures.worst_cases(rows, report.path("worst.png"))
        parts.append("<h3>Worst images</h3>")
        parts.append(report.figure(path, f"The {len(rows)} images with the lowest Jaccard: image, truth "
                                         "(green) and prediction (orange), with the top detection's class and score."))
        out["worst"] = [{"image": r["image"], "jaccard": r["jaccard"], "dice": r["dice"],
                         "label": r["label"], "predicted": r["top_class"], "score": r["top_score"]} for r in worst]
        for row in per_image:
            row.pop("_prediction")
            row.pop("_sample")
        out["per_image"] = per_image
        parts.append("<h3>Per image</h3>")
        parts.append('<div class="scroll">' + _table(
            ["image", "truth", "predicted", "score", "detections", "Jaccard", "Dice"],
            [[r["image"], r["label"], r["top_class"], r["top_score"], r["detections"], r["jaccard"], r["dice"]]
             for r in sorted(per_image, key=lambda r: r["jaccard"])]) + "</div>")

    class_names = list(config.CLASS_NAMES[1:])
    if len(class_names) > 1 and predictions:
        out["classification"] = _classification(report, parts, class_names, predictions)
    return out


def _classification(report, parts, class_names, predictions):
    """Task 3 scores, a confusion matrix and ROC curves from the top detection's probabilities."""
    from sklearn.metrics import confusion_matrix, roc_curve

    truth = np.array([s["class_id"] - 1 for s, _ in predictions])
    probs = np.stack([image_class_probs(r, len(class_names)) for _, r in predictions])
    scores = scoring.score_classification(truth, probs, class_names)
    none = len(class_names)  # column of images without a detection
    predicted = np.array([int(np.argmax(p)) if len(r["scores"]) else none for p, (_, r) in zip(probs, predictions)])
    matrix = confusion_matrix(truth, predicted, labels=list(range(none + 1)))[:none]
    parts.append("<h3>Classification</h3>")
    parts.append(_p(f"Each image's class probabilities are those of its top detection (background left out); "
                    f"balanced accuracy {scores['balanced_accuracy'] if scores['balanced_accuracy'] is not None else 'undefined'}"
                    f", mean AUC {scores['mean_auc'] if scores['mean_auc'] is not None else 'undefined'}."))
    parts.append(_table(["class", "AUC", "AP", "sensitivity", "specificity", "positives"],
                        [[n, m["auc"], m["ap"], m["sensitivity"], m["specificity"], m["positives"]]
                         for n, m in scores["per_class"].items()]))
    path = figures.confusion(matrix, class_names, class_names + ["no detection"], report.path("confusion.png"))
    parts.append('<div class="row">' + report.figure(path, "Confusion matrix: rows are the true classes, "
                                                           "columns the top detection's class."))
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


def _layer_values(keras_model, names):
    """First kernel (else first weight) of each named layer found in the (nested) model: {name: array}."""
    found = {}

    def visit(layer):
        for sub in getattr(layer, "layers", None) or []:
            visit(sub)
        if layer.name in names and layer.name not in found and layer.weights:
            kernels = [w for w in layer.weights if "kernel" in getattr(w, "path", w.name)]
            found[layer.name] = np.asarray((kernels or layer.weights)[0].numpy())
    visit(keras_model)
    return found


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
    values = _layer_values(keras_model, set(wanted))
    flagged_layers = {f["layer"] for f in flagged}
    chosen = []
    for name in wanted:
        if name in values and name not in [c[0] for c in chosen]:
            chosen.append((name, values[name], name in flagged_layers))
    path = figures.weight_histograms(chosen[:WEIGHT_HISTOGRAMS], report.path("weight_histograms.png"))
    parts.append(report.figure(path, "Weight histograms of a few layers from the backbone to the heads "
                                     "(red: flagged)."))
    return {"layers": len(layer_names), "tensors": len(stats), "flagged": flagged}


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
nav ul{columns:2;list-style:none;padding-left:0}nav a{text-decoration:none}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f2f2f2}
tbody tr:nth-child(even){background:#fafafa}
.scroll{max-height:340px;overflow:auto;border:1px solid #eee;display:inline-block;max-width:100%}
figure{display:inline-block;margin:.6em 1em .6em 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555;max-width:600px}
.note{color:#666;font-style:italic}.bad{color:#b00000;font-weight:bold}
.meta{color:#666;font-size:.9em}
"""


def _write_html(report, title, summary):
    """Write index.html with a table of contents and every section. Returns: its path."""
    toc = "".join(f'<li><a href="#{anchor}">{html.escape(name)}</a></li>' for anchor, name, _ in report.sections)
    body = "".join(f'<section id="{anchor}"><h2>{html.escape(name)}</h2>{"".join(parts)}</section>'
                   for anchor, name, parts in report.sections)
    meta = (f"Written {time.strftime('%Y-%m-%d %H:%M')} in {summary['seconds']:.1f} s; "
            f"{summary['sampled_images']} images examined. Numbers: ")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>'
            f'<p class="meta">{html.escape(meta)}<a href="summary.json">summary.json</a></p>'
            f"<nav><h2>Contents</h2><ul>{toc}</ul></nav>{body}</body></html>")
    path = os.path.join(report.out_dir, "index.html")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return path


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
    report = _Report(out_dir)
    summary = _dataset_summary(dataset)
    skipped = [dict(s) for s in summary.get("skipped", [])]
    image_ids = _sample_ids(dataset, max_images, seed)
    samples = _load_samples(dataset, image_ids, skipped)
    result = {"layout": summary.get("layout"), "subset": summary.get("subset"), "scheme": summary.get("scheme"),
              "root": summary.get("root"), "images": int(summary.get("images", len(dataset.image_ids))),
              "classes": dict(summary.get("classes", {})), "skipped": skipped,
              "subsets": _subset_counts(summary, subset_summaries, extra_summaries),
              "sampled_images": len(samples)}
    summary_for_page = dict(summary, skipped=skipped)
    timings = {}

    def timed(name, function, *args):
        begin = time.time()
        value = function(*args)
        timings[name] = round(time.time() - begin, 2)
        return value

    result.update(timed("data", _data_section, report, dataset, summary_for_page, result["subsets"], samples))
    result["anchors"], result["rpn_targets"] = timed("anchors", _anchor_section, report, dataset, config, samples)
    if model is None:
        parts = report.section("model", "Model")
        parts.append(_note("No model was given, so the model stages, results and weights are not shown; "
                           "pass --weights to see them."))
    elif not samples:
        report.section("model", "Model").append(_note("No image could be loaded, so the model was not run."))
    else:
        result["stages"] = timed("stages", _stage_section, report, model, config, samples[0])
        predictions = timed("detect", _predict, model, samples)
        result.update(timed("results", _results_section, report, config, predictions))
        result["weights"] = timed("weights", _weight_section, report, model)
    result["seconds"] = round(time.time() - started, 2)
    result["timings"] = timings
    page_title = title or f"Investigation: {result['layout']} {result['subset']} ({result['scheme']})"
    result["report"] = _write_html(report, page_title, result)
    result = json_safe(result)
    with open(os.path.join(report.out_dir, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2, allow_nan=False)
    log.info("Investigate report written to %s (%d figures, %.1f s)", result["report"], len(report.figures),
             result["seconds"])
    return result
