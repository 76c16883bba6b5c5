"""The investigate report's sections: each writes its part of the page and returns its numbers.

Every ``*_section(report, ...)`` function appends HTML to one section of a
``report_figures.Page``, saves its figures beside it and returns the numbers
that go into summary.json. skinlesion.report examines the images and runs the
model once, then calls these in page order; a section that raises is noted on
the page and the others go on.
"""
import logging

import numpy as np

from mrcnn import visualize
from mrcnn.anchors import compute_backbone_shapes, get_anchors
from mrcnn.boxes import apply_box_deltas, denorm_boxes, norm_boxes
from mrcnn.data import build_rpn_targets, load_image_gt
from mrcnn.images import unmold_image
from mrcnn.reference import pooled_precision_recall, refine_rois, top_rpn_proposals
from skinlesion import report_figures as figures
from skinlesion import scoring
from skinlesion.report_figures import note as _note, paragraph as _p, table as _table

log = logging.getLogger(__name__)

GRID_IMAGES = 8
WORST_IMAGES = 10
STAGE_BOXES = 50  # boxes drawn per stage panel; counts in the table are the full ones
WEIGHT_HISTOGRAMS = 6
# Layers whose weight histograms are shown (when present): one per part of the network.
HISTOGRAM_LAYERS = ("conv1", "res4a_branch2a", "fpn_p2", "rpn_conv_shared", "mrcnn_class_logits",
                    "mrcnn_mask", "res3a_branch2a", "mrcnn_bbox_fc")


def config_class_names(config):
    """Class names indexed by class id, "BG" first (LesionConfig.CLASS_NAMES, else the ids)."""
    names = getattr(config, "CLASS_NAMES", None)
    return list(names) if names else ["BG"] + [str(i) for i in range(1, config.NUM_CLASSES)]


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


def data_section(report, dataset, summary, subsets, samples):
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


def anchor_section(report, dataset, config, samples):
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
    per_level = centre_anchors(anchors_px, [r["anchors"] for r in levels],
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


def stage_section(report, dataset, model, config, sample):
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
    class_names = config_class_names(config)
    path = figures.detections(image, boxes, masks, class_ids, scores, class_names,
                              report.path("detections.png"), f"{len(scores)} detections")
    parts.append(report.figure(path, "Final detections with their masks, class and score on the original image."))
    return counts


def results_section(report, config, samples):
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
            row.update(AP50=prediction["ap50"], AP=prediction["ap"])
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

    class_names = config_class_names(config)[1:]
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


def layer_weights(keras_model, names):
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


def weight_section(report, model):
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
    values = layer_weights(keras_model, set(wanted))
    flagged_layers = {f["layer"] for f in flagged}
    chosen = []
    for name in wanted:
        if name in values and name not in [c[0] for c in chosen]:
            chosen.append((name, values[name], name in flagged_layers))
    path = figures.weight_histograms(chosen[:WEIGHT_HISTOGRAMS], report.path("weight_histograms.png"))
    parts.append(report.figure(path, "Weight histograms of a few layers from the backbone to the heads "
                                     "(red: flagged)."))
    return {"layers": len(layer_names), "tensors": len(stats), "flagged": flagged}
