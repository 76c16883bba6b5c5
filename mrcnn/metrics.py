"""Detection metrics: instance matching and mask AP (Matterport's API, numpy).

Boxes are [N, (y1, x1, y2, x2)] in pixels with y2/x2 exclusive, masks are
[H, W, N] bool (or 0/1), class ids are int [N], scores are float [N].

Two ways to average AP over a dataset live here:

- ``compute_ap`` / ``evaluate_detections``: Matterport's way. AP is computed
  per image (all predictions of the image ranked together, a prediction is a
  true positive only if it matches a ground-truth instance of the same class),
  then averaged over images.
- ``compute_pooled_ap``: COCO / VOC's way. For each class the predictions of
  all images are pooled into one ranking, AP is computed per class, then
  averaged over the classes that have ground truth. With ``recall_points=101``
  it reproduces pycocotools' interpolation.
"""
import logging

import numpy as np

logger = logging.getLogger(__name__)

# 0.50:0.95:0.05 as pycocotools builds it. (Matterport's np.arange gives
# 0.7000000000000002 ..., which would reject an IoU of exactly 0.7.)
DEFAULT_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def trim_zeros(x):
    """Drop the all-zero rows that pad a fixed-size array.

    x: [N, C] (e.g. boxes [N, 4] padded with zeros).
    Returns: [M, C], M <= N, the rows that are not entirely zero.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"trim_zeros expects a 2-D array, got shape {x.shape}")
    return x[~np.all(x == 0, axis=1)]


def _mask_overlaps(masks1, masks2):
    """IoU matrix between two sets of masks, in float64.

    masks1: [H, W, N]; masks2: [H, W, M] (bool or 0/1). Returns: float64 [N, M].
    Computed in float64 so IoUs that sit exactly on a threshold (0.5 = 1/2)
    compare the same way as in pycocotools.
    """
    count1, count2 = masks1.shape[-1], masks2.shape[-1]
    if count1 == 0 or count2 == 0:
        return np.zeros((count1, count2))
    if masks1.shape[:2] != masks2.shape[:2]:
        raise ValueError(
            f"Mask sizes differ: {masks1.shape[:2]} vs {masks2.shape[:2]}; "
            "predicted and ground-truth masks must have the image's size")
    flat1 = np.reshape(masks1 > 0.5, (-1, count1)).astype(np.float64)
    flat2 = np.reshape(masks2 > 0.5, (-1, count2)).astype(np.float64)
    area1 = flat1.sum(axis=0)
    area2 = flat2.sum(axis=0)
    intersections = flat1.T @ flat2
    unions = area1[:, None] + area2[None, :] - intersections
    return np.where(unions > 0, intersections / np.maximum(unions, 1.0), 0.0)


def _prepare(boxes, class_ids, masks, scores=None):
    """Drop zero-padded instances and coerce dtypes.

    boxes: [N, 4]; class_ids: [N]; masks: [H, W, N]; scores: [N] or None.
    Returns: (boxes [M, 4], class_ids [M], masks [H, W, M], scores [M] or None).
    """
    boxes = np.asarray(boxes).reshape(-1, 4)
    keep = ~np.all(boxes == 0, axis=1)
    class_ids = np.asarray(class_ids).reshape(-1)
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"Masks must be [H, W, N], got shape {masks.shape}")
    counts = {"class ids": len(class_ids), "masks": masks.shape[-1]}
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        counts["scores"] = len(scores)
    short = {name: count for name, count in counts.items() if count < len(boxes)}
    if short:
        raise ValueError(f"{len(boxes)} boxes but only {short}; each instance needs a box, "
                         "a class id, a mask (and a score)")
    # Padding beyond the box count (Matterport pads to a fixed size) is cut.
    class_ids = class_ids[:len(boxes)][keep]
    masks = masks[..., :len(boxes)][..., keep]
    if scores is not None:
        scores = scores[:len(boxes)][keep]
    return boxes[keep], class_ids, masks, scores


def compute_matches(gt_boxes, gt_class_ids, gt_masks,
                    pred_boxes, pred_class_ids, pred_scores, pred_masks,
                    iou_threshold=0.5, score_threshold=0.0):
    """Greedy matching of predictions to ground truth by mask IoU.

    gt_boxes: [G, (y1, x1, y2, x2)]; gt_class_ids: [G]; gt_masks: [H, W, G].
    pred_boxes: [P, (y1, x1, y2, x2)]; pred_class_ids: [P]; pred_scores: [P];
    pred_masks: [H, W, P]. All-zero boxes are padding and are dropped first.
    iou_threshold: minimum mask IoU for a match (a match needs IoU >= it).
    score_threshold: predictions scoring below it are ignored. (Matterport's
        code compares this value with IoUs instead, which has no effect unless
        it exceeds iou_threshold; here it does what its name says. The
        default 0.0 behaves the same in both.)

    Predictions are visited from the highest score down (a stable sort, so
    tied scores keep their input order); each takes the unmatched
    ground-truth instance of the same class with the highest IoU, if that IoU
    reaches iou_threshold.

    Returns:
        gt_match: float [G'], for each ground-truth instance the index of the
            matched prediction (in score order) or -1.
        pred_match: float [P'], for each prediction in score order the index
            of the matched ground-truth instance or -1.
        overlaps: float [P', G'] mask IoUs, predictions in score order.
    """
    gt_boxes, gt_class_ids, gt_masks, _ = _prepare(gt_boxes, gt_class_ids, gt_masks)
    pred_boxes, pred_class_ids, pred_masks, pred_scores = _prepare(
        pred_boxes, pred_class_ids, pred_masks, pred_scores)
    if score_threshold > 0:
        keep = pred_scores >= score_threshold
        pred_boxes, pred_class_ids = pred_boxes[keep], pred_class_ids[keep]
        pred_masks, pred_scores = pred_masks[..., keep], pred_scores[keep]

    order = np.argsort(-pred_scores, kind="stable")
    pred_class_ids = pred_class_ids[order]
    pred_masks = pred_masks[..., order]

    overlaps = _mask_overlaps(pred_masks, gt_masks)
    gt_match = -1 * np.ones(len(gt_boxes))
    pred_match = -1 * np.ones(len(pred_boxes))
    for pred_index in range(len(pred_boxes)):
        # Stable sort of reversed IoUs: among equal IoUs the later ground
        # truth comes first, as in Matterport and pycocotools.
        candidates = np.argsort(-overlaps[pred_index, ::-1], kind="stable")
        candidates = len(gt_boxes) - 1 - candidates
        for gt_index in candidates:
            if gt_match[gt_index] > -1:
                continue
            if overlaps[pred_index, gt_index] < iou_threshold:
                break
            if pred_class_ids[pred_index] == gt_class_ids[gt_index]:
                gt_match[gt_index] = pred_index
                pred_match[pred_index] = gt_index
                break
    return gt_match, pred_match, overlaps


def _all_point_ap(is_true_positive, gt_count):
    """VOC all-point interpolated AP of a ranked list of predictions.

    is_true_positive: bool [P] in score order; gt_count: number of
        ground-truth instances (> 0).
    Returns: (ap, precisions [P + 2], recalls [P + 2]) with Matterport's
        padding: precisions start and end with 0, recalls with 0 and 1, and
        precisions are made monotonically non-increasing.
    """
    hits = np.cumsum(is_true_positive)
    precisions = hits / (np.arange(len(is_true_positive)) + 1)
    recalls = hits.astype(np.float64) / gt_count
    precisions = np.concatenate([[0.0], precisions, [0.0]])
    recalls = np.concatenate([[0.0], recalls, [1.0]])
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.where(recalls[:-1] != recalls[1:])[0] + 1
    ap = float(np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps]))
    return ap, precisions, recalls


def _sampled_ap(is_true_positive, gt_count, recall_points):
    """AP sampled at evenly spaced recall levels, as pycocotools does.

    is_true_positive: bool [P] in score order; gt_count: > 0;
    recall_points: number of recall levels in [0, 1] (COCO uses 101).
    Returns: float, the mean interpolated precision over the recall levels
        (0 for levels the predictions never reach).
    """
    hits = np.cumsum(is_true_positive).astype(np.float64)
    misses = np.cumsum(~np.asarray(is_true_positive, dtype=bool)).astype(np.float64)
    recalls = hits / gt_count
    precisions = hits / np.maximum(hits + misses, 1.0)
    precisions = np.maximum.accumulate(precisions[::-1])[::-1] if len(precisions) else precisions
    levels = np.linspace(0.0, 1.0, recall_points)
    positions = np.searchsorted(recalls, levels, side="left")
    sampled = np.zeros(recall_points)
    reached = positions < len(precisions)
    sampled[reached] = precisions[positions[reached]]
    return float(sampled.mean())


def compute_ap(gt_boxes, gt_class_ids, gt_masks,
               pred_boxes, pred_class_ids, pred_scores, pred_masks,
               iou_threshold=0.5):
    """Average precision of one image's predictions (Matterport's compute_ap).

    gt_boxes: [G, (y1, x1, y2, x2)]; gt_class_ids: [G]; gt_masks: [H, W, G];
    pred_boxes: [P, 4]; pred_class_ids: [P]; pred_scores: [P];
    pred_masks: [H, W, P]; iou_threshold: mask IoU needed for a match.

    All predictions are ranked together by score; a prediction is a true
    positive when it matches (compute_matches) a ground-truth instance of its
    class. AP is the area under the precision envelope (VOC all-point
    interpolation).

    Returns:
        mAP: float; NaN when the image has no ground truth (AP is undefined
            there; Matterport returned 0 or NaN depending on predictions).
        precisions: float [P' + 2], interpolated, padded with 0 at both ends.
        recalls: float [P' + 2], padded with 0 and 1.
        overlaps: float [P', G'] mask IoUs, predictions in score order.
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks,
        pred_boxes, pred_class_ids, pred_scores, pred_masks, iou_threshold)
    if len(gt_match) == 0:
        logger.debug("compute_ap: no ground-truth instances; AP is undefined (NaN)")
        return (float("nan"), np.array([0.0, 0.0]), np.array([0.0, 1.0]), overlaps)
    ap, precisions, recalls = _all_point_ap(pred_match > -1, len(gt_match))
    return ap, precisions, recalls, overlaps


def compute_ap_range(gt_box, gt_class_id, gt_mask,
                     pred_box, pred_class_id, pred_score, pred_mask,
                     iou_thresholds=None, verbose=1):
    """Mean of compute_ap over a range of IoU thresholds (COCO's 0.5:0.95).

    Arguments as compute_ap; iou_thresholds: sequence of floats, default
    0.50, 0.55, ..., 0.95. verbose: 1 logs the AP at each threshold (INFO).
    Returns: float, the mean AP over the thresholds (NaN without ground truth).
    """
    if iou_thresholds is None:
        iou_thresholds = DEFAULT_IOU_THRESHOLDS
    aps = []
    for iou_threshold in iou_thresholds:
        ap = compute_ap(gt_box, gt_class_id, gt_mask,
                        pred_box, pred_class_id, pred_score, pred_mask,
                        iou_threshold=iou_threshold)[0]
        if verbose:
            logger.info("AP @%.2f:\t %.3f", iou_threshold, ap)
        aps.append(ap)
    mean_ap = float(np.mean(aps)) if aps else float("nan")
    if verbose:
        logger.info("AP @%.2f-%.2f:\t %.3f", iou_thresholds[0], iou_thresholds[-1], mean_ap)
    return mean_ap


def compute_recall(pred_boxes, gt_boxes, iou):
    """Share of ground-truth boxes that some predicted box covers with IoU >= iou.

    pred_boxes: [P, (y1, x1, y2, x2)]; gt_boxes: [G, (y1, x1, y2, x2)];
    iou: float threshold.
    Returns: (recall float, positive_ids int [K] indices of the predictions
        whose best box IoU reaches iou).
    """
    from mrcnn.boxes import compute_overlaps

    pred_boxes = np.asarray(pred_boxes).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
    if len(gt_boxes) == 0:
        return float("nan"), np.zeros([0], dtype=np.int64)
    if len(pred_boxes) == 0:
        return 0.0, np.zeros([0], dtype=np.int64)
    overlaps = compute_overlaps(pred_boxes, gt_boxes)
    best_iou = np.max(overlaps, axis=1)
    best_gt = np.argmax(overlaps, axis=1)
    positive_ids = np.where(best_iou >= iou)[0]
    recall = len(set(best_gt[positive_ids].tolist())) / gt_boxes.shape[0]
    return recall, positive_ids


_RECORD_KEYS = ("gt_boxes", "gt_class_ids", "gt_masks",
                "pred_boxes", "pred_class_ids", "pred_scores", "pred_masks")
# Field names of MaskRCNN.detect()'s result dicts, accepted for pred_* fields.
_DETECT_ALIASES = {"pred_boxes": "rois", "pred_class_ids": "class_ids",
                   "pred_scores": "scores", "pred_masks": "masks"}


def _record_arrays(record):
    """The seven arrays of a per-image record, in compute_ap's argument order.

    record: dict with gt_boxes, gt_class_ids, gt_masks and pred_boxes,
        pred_class_ids, pred_scores, pred_masks (or detect()'s rois,
        class_ids, scores, masks). Missing gt_boxes / pred_boxes are derived
        from the masks.
    Returns: list of 7 arrays.
    """
    from mrcnn.boxes import extract_bboxes

    arrays = {}
    for key in _RECORD_KEYS:
        value = record.get(key)
        if value is None and key in _DETECT_ALIASES:
            value = record.get(_DETECT_ALIASES[key])
        arrays[key] = value
    for prefix in ("gt", "pred"):
        if arrays[f"{prefix}_masks"] is None:
            raise KeyError(f"Detection record is missing '{prefix}_masks' "
                           f"(keys present: {sorted(record)})")
        if arrays[f"{prefix}_boxes"] is None:
            arrays[f"{prefix}_boxes"] = extract_bboxes(np.asarray(arrays[f"{prefix}_masks"]))
    for key in ("gt_class_ids", "pred_class_ids", "pred_scores"):
        if arrays[key] is None:
            raise KeyError(f"Detection record is missing '{key}' (keys present: {sorted(record)})")
    return [arrays[key] for key in _RECORD_KEYS]


def evaluate_detections(records, iou_thresholds=None):
    """Dataset mask mAP as Matterport's samples compute it: mean of per-image AP.

    records: list of per-image dicts with gt_boxes [G, 4], gt_class_ids [G],
        gt_masks [H, W, G], pred_boxes [P, 4], pred_class_ids [P],
        pred_scores [P], pred_masks [H, W, P] (detect()'s rois / class_ids /
        scores / masks are accepted for the pred_* fields; boxes may be
        omitted and are then taken from the masks).
    iou_thresholds: thresholds averaged into "mAP"; default 0.50:0.95:0.05.

    Returns: {"mAP50": mean over images of compute_ap at IoU 0.5,
              "mAP": mean over images of compute_ap_range(iou_thresholds),
              "images": images averaged, "images_without_gt": images left out}.
        Values are None when no image has ground truth.

    How this differs from COCO's AP (pycocotools, compute_pooled_ap): COCO
    pools the predictions of all images per class into one ranking, samples
    precision at 101 recall levels and averages over classes; here every
    image gets its own all-point AP (all classes ranked together) and images
    weigh equally, whatever their instance count. Images without ground truth
    have no defined AP and are left out, so false positives on them are not
    counted (COCO leaves them out of a class's AP only if the class has no
    ground truth anywhere).
    """
    if iou_thresholds is None:
        iou_thresholds = DEFAULT_IOU_THRESHOLDS
    iou_thresholds = [float(t) for t in iou_thresholds]
    ap50s, ap_ranges, without_gt = [], [], 0
    for record in records:
        arrays = _record_arrays(record)
        ap50 = compute_ap(*arrays, iou_threshold=0.5)[0]
        if np.isnan(ap50):
            without_gt += 1
            continue
        ap50s.append(ap50)
        ap_ranges.append(compute_ap_range(*arrays, iou_thresholds=iou_thresholds, verbose=0))
    if without_gt:
        logger.info("evaluate_detections: %d image(s) without ground truth left out of the mean",
                    without_gt)
    return {
        "mAP50": float(np.mean(ap50s)) if ap50s else None,
        "mAP": float(np.mean(ap_ranges)) if ap_ranges else None,
        "images": len(ap50s),
        "images_without_gt": without_gt,
    }


def compute_pooled_ap(records, iou_threshold=0.5, recall_points=None):
    """COCO-style mask AP: predictions pooled over images per class.

    records: list of per-image dicts as for evaluate_detections.
    iou_threshold: mask IoU needed for a match.
    recall_points: None for VOC all-point interpolation; 101 to sample
        precision at 101 recall levels exactly as pycocotools does.

    Matching is per image (compute_matches, a prediction only matches its own
    class). Per class, the predictions of all images are ranked by score
    (stable: ties keep image order, then score order within the image) and an
    AP is computed against the class's total ground-truth count.
    pycocotools additionally caps detections at 100 per image and drops
    ground truth outside its area range; neither matters for lesion images.

    Returns: {"mAP": mean AP over classes with ground truth (None if none),
              "per_class": {class_id: AP}}.
    """
    scores_by_class, hits_by_class, gt_count_by_class = {}, {}, {}
    for record in records:
        arrays = _record_arrays(record)
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks = arrays
        gt_match, pred_match, _ = compute_matches(*arrays, iou_threshold=iou_threshold)
        gt_class_ids = _prepare(gt_boxes, gt_class_ids, gt_masks)[1]
        _, pred_class_ids, _, pred_scores = _prepare(
            pred_boxes, pred_class_ids, pred_masks, pred_scores)
        order = np.argsort(-pred_scores, kind="stable")
        pred_class_ids, pred_scores = pred_class_ids[order], pred_scores[order]
        for class_id in np.unique(gt_class_ids):
            gt_count_by_class[int(class_id)] = (gt_count_by_class.get(int(class_id), 0)
                                                + int(np.sum(gt_class_ids == class_id)))
        for class_id in np.unique(pred_class_ids):
            of_class = pred_class_ids == class_id
            scores_by_class.setdefault(int(class_id), []).append(pred_scores[of_class])
            hits_by_class.setdefault(int(class_id), []).append(pred_match[of_class] > -1)

    per_class = {}
    for class_id in sorted(gt_count_by_class):
        scores = np.concatenate(scores_by_class.get(class_id, [np.zeros(0)]))
        hits = np.concatenate(hits_by_class.get(class_id, [np.zeros(0, dtype=bool)]))
        ranked_hits = hits[np.argsort(-scores, kind="stable")]
        if recall_points:
            per_class[class_id] = _sampled_ap(ranked_hits, gt_count_by_class[class_id],
                                              recall_points)
        else:
            per_class[class_id] = _all_point_ap(ranked_hits, gt_count_by_class[class_id])[0]
    mean_ap = float(np.mean(list(per_class.values()))) if per_class else None
    return {"mAP": mean_ap, "per_class": per_class}
