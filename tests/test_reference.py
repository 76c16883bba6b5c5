"""mrcnn.reference, the numpy twins of the inference stages, against hand-worked examples.

(The graph layers are checked against these on random inputs in test_graph_layers.py.)
"""
import numpy as np
import pytest

from mrcnn import metrics, reference


def test_top_rpn_proposals_ranks_refines_and_clips():
    anchors = np.array([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9], [0.0, 0.0, 0.2, 0.2]], np.float32)
    scores = np.array([0.2, 0.9, 0.5])
    std = np.array([0.1, 0.1, 0.2, 0.2])
    deltas = np.zeros((3, 4), np.float32)
    deltas[1] = [2.5, 0, 0, 0]  # dy = 0.25 of the height after * std: centre 0.7 -> 0.8
    order, top_anchors, refined, top_scores = reference.top_rpn_proposals(scores, deltas, anchors, std, 2)
    assert order.tolist() == [1, 2] and top_scores.tolist() == [0.9, 0.5]
    np.testing.assert_allclose(top_anchors, anchors[[1, 2]])
    np.testing.assert_allclose(refined, [[0.6, 0.5, 1.0, 0.9], [0.0, 0.0, 0.2, 0.2]], atol=1e-6)


def test_refine_rois_takes_the_argmax_class_deltas_and_flags_padding():
    rois = np.array([[0.2, 0.2, 0.4, 0.4], [0, 0, 0, 0]], np.float32)
    probs = np.array([[0.1, 0.7, 0.2], [1.0, 0.0, 0.0]])
    deltas = np.zeros((2, 3, 4))
    deltas[0, 1] = [0, 1.0, 0, 0]  # class 1: dx = 0.1 of the width after * std
    deltas[0, 2] = [5.0, 5.0, 0, 0]  # another class's deltas must not be used
    out = reference.refine_rois(rois, probs, deltas, [0.1, 0.1, 0.2, 0.2], [0.0, 0.0, 1.0, 1.0])
    assert out["valid"].tolist() == [True, False] and out["class_ids"].tolist() == [1, 0]
    np.testing.assert_allclose(out["scores"], [0.7, 1.0])
    np.testing.assert_allclose(out["refined"][0], [0.2, 0.22, 0.4, 0.42], atol=1e-6)


def test_pooled_precision_recall_by_hand():
    truth = np.zeros((4, 4, 1), bool)
    truth[:2, :2] = True
    miss = np.zeros((4, 4, 1), bool)
    miss[3, 3] = True
    record = {"gt_boxes": np.array([[0, 0, 2, 2]]), "gt_class_ids": np.array([1]), "gt_masks": truth}
    hit_image = dict(record, pred_boxes=np.array([[0, 0, 2, 2]]), pred_class_ids=np.array([1]),
                     pred_scores=np.array([0.6]), pred_masks=truth)
    miss_image = dict(record, pred_boxes=np.array([[3, 3, 4, 4]]), pred_class_ids=np.array([1]),
                      pred_scores=np.array([0.9]), pred_masks=miss)
    matches = [reference.match_detections(hit_image), reference.match_detections(miss_image)]
    assert matches[0][1].tolist() == [True] and matches[1][1].tolist() == [False] and matches[0][2] == 1
    precisions, recalls, ap = reference.pooled_precision_recall(matches)
    # Ranked: miss (0.9), hit (0.6) -> precision 0, 1/2 at recall 0, 1/2 of two truths.
    assert ap == pytest.approx(0.25)
    assert recalls.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert reference.pooled_precision_recall([])[2] is None


def test_rpn_proposals_drop_overlaps_and_pad():
    anchors = np.array([[0.1, 0.1, 0.5, 0.5], [0.11, 0.1, 0.51, 0.5], [0.6, 0.6, 0.9, 0.9]], np.float32)
    scores = np.array([0.9, 0.8, 0.7])
    proposals, kept = reference.rpn_proposals(scores, np.zeros((3, 4)), anchors, [0.1, 0.1, 0.2, 0.2], 10, 0.7, 4)
    # The second anchor overlaps the first with IoU 0.95: NMS drops it; two rows of padding follow.
    assert kept == 2 and proposals.shape == (4, 4) and proposals.dtype == np.float32
    np.testing.assert_allclose(proposals[:2], anchors[[0, 2]], atol=1e-6)
    assert np.all(proposals[2:] == 0)


def test_detections_keep_foreground_above_confidence_per_class():
    rois = np.array([[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9],
                     [0.2, 0.2, 0.4, 0.4], [0, 0, 0, 0]], np.float32)
    probs = np.array([[0.1, 0.8, 0.1],     # class 1
                      [0.1, 0.1, 0.8],     # same box, class 2: per-class NMS keeps both
                      [0.2, 0.7, 0.1],     # class 1 elsewhere
                      [0.6, 0.3, 0.1],     # background
                      [0.0, 1.0, 0.0]])    # padding ROI (no area)
    rows, kept_probs, count = reference.detections(rois, probs, np.zeros((5, 3, 4)), [0, 0, 1, 1],
                                                   [0.1, 0.1, 0.2, 0.2], 0.75, 0.3, 3)
    assert count == 2 and rows.shape == (3, 6) and kept_probs.shape == (3, 3)
    np.testing.assert_allclose(rows[:2, 4:], [[1, 0.8], [2, 0.8]], atol=1e-6)  # the 0.7 one is below 0.75
    np.testing.assert_allclose(kept_probs[:2], probs[:2])
    assert np.all(rows[2] == 0) and np.all(kept_probs[2] == 0)


def test_pooled_ap_of_one_image_is_its_compute_ap():
    truth = np.zeros((6, 6, 2), bool)
    truth[:3, :3, 0] = truth[3:, 3:, 1] = True
    pred = np.zeros((6, 6, 3), bool)
    pred[:3, :3, 0] = pred[3:, 3:, 1] = pred[:2, 4:, 2] = True
    record = {"gt_boxes": np.array([[0, 0, 3, 3], [3, 3, 6, 6]]), "gt_class_ids": np.array([1, 1]),
              "gt_masks": truth, "pred_boxes": np.array([[0, 0, 3, 3], [3, 3, 6, 6], [0, 4, 2, 6]]),
              "pred_class_ids": np.array([1, 1, 1]), "pred_scores": np.array([0.5, 0.7, 0.9]),
              "pred_masks": pred}
    _, _, ap = reference.pooled_precision_recall([reference.match_detections(record)])
    expected = metrics.compute_ap(*metrics._record_arrays(record))[0]
    assert ap == pytest.approx(expected) and 0 < ap < 1
