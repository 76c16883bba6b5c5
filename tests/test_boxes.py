"""Numpy box maths against hand-worked examples."""
import numpy as np
import pytest

from mrcnn import boxes as B


def test_extract_bboxes_exclusive_corners_and_empty_mask():
    mask = np.zeros((10, 12, 3), dtype=bool)
    mask[2:5, 3:8, 0] = True          # rows 2..4, cols 3..7
    mask[9, 11, 2] = True              # single pixel in the corner
    result = B.extract_bboxes(mask)
    assert result.dtype == np.int32 and result.shape == (3, 4)
    np.testing.assert_array_equal(result, [[2, 3, 5, 8], [0, 0, 0, 0], [9, 11, 10, 12]])
    assert B.extract_bboxes(np.zeros((4, 4, 0), bool)).shape == (0, 4)


def test_compute_iou_known_values():
    box = np.array([0, 0, 10, 10])
    others = np.array([[5, 5, 15, 15],     # 25 / 175
                       [0, 0, 10, 10],     # identical
                       [20, 20, 30, 30],   # disjoint
                       [0, 0, 5, 10]])     # half, inside
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    np.testing.assert_allclose(B.compute_iou(box, others, 100, areas), [1 / 7, 1, 0, 0.5])


def test_compute_overlaps_matrix_and_symmetry():
    boxes1 = np.array([[0, 0, 10, 10], [0, 0, 20, 20]])
    boxes2 = np.array([[5, 5, 15, 15], [0, 0, 10, 10], [0, 10, 10, 20]])
    overlaps = B.compute_overlaps(boxes1, boxes2)
    assert overlaps.shape == (2, 3)
    np.testing.assert_allclose(overlaps, [[1 / 7, 1, 0], [100 / 400, 100 / 400, 100 / 400]])
    np.testing.assert_allclose(B.compute_overlaps(boxes2, boxes1), overlaps.T)
    assert B.compute_overlaps(np.zeros((0, 4)), boxes2).shape == (0, 3)


def test_compute_overlaps_masks_known_values():
    top = np.zeros((4, 4), bool)
    top[:2] = True
    left = np.zeros((4, 4), bool)
    left[:, :2] = True
    masks1 = np.stack([top, left], axis=-1)
    masks2 = np.stack([left], axis=-1)
    # top vs left: intersection 4 px, union 12 px.
    np.testing.assert_allclose(B.compute_overlaps_masks(masks1, masks2), [[1 / 3], [1.0]])
    assert B.compute_overlaps_masks(masks1, np.zeros((4, 4, 0), bool)).shape == (2, 0)


def test_non_max_suppression_worked_example():
    boxes = np.array([[0, 0, 10, 10],     # a: IoU with d = 0.9
                      [1, 1, 11, 11],     # b: IoU with a = 81/119, with d = 72/118
                      [20, 20, 30, 30],   # c: disjoint from all
                      [0, 0, 10, 9]])     # d: best score
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    keep = B.non_max_suppression(boxes, scores, 0.5)
    assert keep.dtype == np.int32
    np.testing.assert_array_equal(keep, [3, 2])
    # At 0.7 a (0.9 > 0.7 vs d) is dropped, b survives (0.61 vs d) then c.
    np.testing.assert_array_equal(B.non_max_suppression(boxes, scores, 0.7), [3, 1, 2])
    np.testing.assert_array_equal(B.non_max_suppression(boxes, scores, 0.95), [3, 0, 1, 2])
    assert B.non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


def test_box_refinement_worked_example_and_inverse():
    box = np.array([[0, 0, 10, 10]])
    gt = np.array([[2, 4, 12, 24]])   # centre (5, 5) -> (7, 14); size 10x10 -> 10x20
    deltas = B.box_refinement(box, gt)
    np.testing.assert_allclose(deltas, [[0.2, 0.9, 0.0, np.log(2)]], rtol=1e-6)
    np.testing.assert_allclose(B.apply_box_deltas(box, deltas), gt, atol=1e-4)


def test_apply_box_deltas_round_trip_random():
    rng = np.random.default_rng(0)
    y1x1 = rng.uniform(0, 100, (20, 2))
    boxes = np.concatenate([y1x1, y1x1 + rng.uniform(5, 50, (20, 2))], axis=1)
    deltas = rng.normal(0, 0.3, (20, 4)).astype(np.float32)
    moved = B.apply_box_deltas(boxes, deltas)
    np.testing.assert_allclose(B.box_refinement(boxes, moved), deltas, atol=1e-4)
    np.testing.assert_allclose(B.apply_box_deltas(boxes, np.zeros((20, 4))), boxes, atol=1e-4)


def test_norm_boxes_convention_and_round_trip():
    shape = (100, 200)
    np.testing.assert_allclose(B.norm_boxes(np.array([[0, 0, 100, 200]]), shape), [[0, 0, 1, 1]])
    np.testing.assert_allclose(B.norm_boxes(np.array([[0, 0, 1, 1]]), shape), [[0, 0, 0, 0]])
    rng = np.random.default_rng(1)
    y1 = rng.integers(0, 90, 30)
    x1 = rng.integers(0, 190, 30)
    boxes = np.stack([y1, x1, y1 + rng.integers(1, 10, 30), x1 + rng.integers(1, 10, 30)], axis=1)
    normalized = B.norm_boxes(boxes, shape)
    assert normalized.dtype == np.float32
    restored = B.denorm_boxes(normalized, shape)
    assert restored.dtype == np.int32
    np.testing.assert_array_equal(restored, boxes)


@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_nms_kept_boxes_do_not_overlap_above_threshold(threshold):
    rng = np.random.default_rng(2)
    y1x1 = rng.uniform(0, 50, (40, 2))
    boxes = np.concatenate([y1x1, y1x1 + rng.uniform(5, 30, (40, 2))], axis=1)
    scores = rng.uniform(size=40)
    keep = B.non_max_suppression(boxes, scores, threshold)
    overlaps = B.compute_overlaps(boxes[keep], boxes[keep])
    np.fill_diagonal(overlaps, 0)
    assert overlaps.max() <= threshold
    assert np.all(np.diff(scores[keep]) <= 0)  # best first
