"""Numpy references of the inference stages, and detection matching pooled over images.

One image at a time, in plain numpy, what the graph computes in batches:
``rpn_proposals`` is ProposalLayer (``top_rpn_proposals`` its part before
NMS), ``detections`` is DetectionLayer with DETECTION_SCORE "class" and no
fallback (``refine_rois`` its part before filtering). The graph layers are
tested against these (tests/test_graph_layers.py), and the investigate report
draws its stage panels with them, so the pictures show what the graph does.

``match_detections`` and ``pooled_precision_recall`` rank the detections of
all images together, classes mixed: the report's precision-recall curve.
(mrcnn.metrics averages per-image AP, or pools per class, instead.)

Boxes are [N, (y1, x1, y2, x2)] in normalized coordinates.
"""
import numpy as np

from mrcnn.boxes import apply_box_deltas, non_max_suppression
from mrcnn.metrics import _all_point_ap, compute_matches


# --------------------------------------------------------------------------- RPN proposals

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


def rpn_proposals(rpn_scores, rpn_deltas, anchors_norm, std_dev, pre_nms_limit, nms_threshold, count):
    """ProposalLayer on one image: top_rpn_proposals, then NMS, zero-padded.

    rpn_scores: [A] foreground probabilities; rpn_deltas: [A, 4];
    anchors_norm: [A, 4]; std_dev: RPN_BBOX_STD_DEV; pre_nms_limit:
    PRE_NMS_LIMIT; nms_threshold: RPN_NMS_THRESHOLD; count: proposals kept.
    Returns: (proposals float32 [count, 4] normalized, best first, zero rows
    after the survivors; number of survivors).
    """
    _, _, refined, scores = top_rpn_proposals(rpn_scores, rpn_deltas, anchors_norm, std_dev, pre_nms_limit)
    keep = non_max_suppression(refined, scores, nms_threshold)[:count]
    proposals = np.zeros((count, 4), np.float32)
    proposals[:len(keep)] = refined[keep]
    return proposals, len(keep)


# --------------------------------------------------------------------------- detections

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


def _area(boxes):
    """Areas of boxes [N, 4]. Returns: [N]."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def detections(rois_norm, class_probs, class_deltas, window_norm, std_dev, min_confidence, nms_threshold,
               max_instances):
    """DetectionLayer on one image: refine_rois, drop background and low scores, per-class NMS.

    rois_norm: [N, 4] normalized; class_probs: [N, C]; class_deltas:
    [N, C, 4]; window_norm: [4]; std_dev: BBOX_STD_DEV; min_confidence:
    DETECTION_MIN_CONFIDENCE; nms_threshold: DETECTION_NMS_THRESHOLD;
    max_instances: DETECTION_MAX_INSTANCES (D).
    A ROI without area (padding) or a box clipped to nothing is not a
    detection. Returns: (detections float32 [D, (y1, x1, y2, x2, class_id,
    score)] best first, their class_probs rows float32 [D, C], both
    zero-padded; number of detections).
    """
    rois_norm = np.asarray(rois_norm)
    class_probs = np.asarray(class_probs)
    stage = refine_rois(rois_norm, class_probs, class_deltas, std_dev, window_norm)
    class_ids, scores, refined = stage["class_ids"], stage["scores"], stage["refined"]
    keep = np.where((class_ids > 0) & (scores >= min_confidence)
                    & (_area(refined) > 0) & (_area(rois_norm) > 0))[0]
    kept = []
    for class_id in np.unique(class_ids[keep]):
        of_class = keep[class_ids[keep] == class_id]
        kept.extend(of_class[non_max_suppression(refined[of_class], scores[of_class], nms_threshold)])
    kept = np.array(kept, int)
    kept = kept[np.argsort(-scores[kept], kind="stable")][:max_instances]
    rows = np.zeros((max_instances, 6), np.float32)
    rows[:len(kept)] = np.concatenate([refined[kept], class_ids[kept, None], scores[kept, None]], 1)
    probs = np.zeros((max_instances, class_probs.shape[1]), np.float32)
    probs[:len(kept)] = class_probs[kept]
    return rows, probs, len(kept)


# --------------------------------------------------------------------------- pooled matching

def match_detections(record, iou_threshold=0.5):
    """Which of one image's detections hit a ground-truth instance.

    record: dict as for mrcnn.metrics.evaluate_detections (gt_* and pred_* arrays).
    Returns: (scores float [P] best first, hits bool [P], ground-truth count).
    """
    gt_match, pred_match, _ = compute_matches(
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
    ap, precisions, recalls = _all_point_ap(hits[np.argsort(-scores, kind="stable")], truth_count)
    return precisions, recalls, ap
