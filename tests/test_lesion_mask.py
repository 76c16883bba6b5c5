"""skinlesion.inference.lesion_mask and image_probabilities: one lesion per image from the detections."""
import numpy as np

from skinlesion.inference import image_probabilities, lesion_mask


def result(boxes, scores, probs=None, size=20):
    """A detect() dict with box-shaped masks: boxes [(y1, x1, y2, x2)], scores [N]."""
    masks = np.zeros((size, size, len(boxes)), bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, i] = True
    n = len(boxes)
    return {"rois": np.array(boxes, np.int32).reshape(n, 4), "scores": np.array(scores, np.float32),
            "class_ids": np.ones(n, np.int32), "masks": masks,
            "probs": np.array(probs, np.float32) if probs is not None else np.full((n, 3), 1 / 3)}


def test_top_detection_and_a_smaller_overlapping_piece_are_united():
    r = result([(2, 2, 10, 10), (8, 8, 12, 12), (15, 15, 18, 18)], [0.9, 0.8, 0.7])
    mask, used, low = lesion_mask(r, 0.5)
    assert used == [0, 1] and not low  # the disjoint third detection is another blob, not this lesion
    assert mask.sum() == 64 + 16 - 4 and not mask[15:18, 15:18].any()


def test_a_larger_overlapping_detection_is_not_united():
    # PH2 IMD092: a small correct lesion and a second, image-sized detection around it.
    r = result([(5, 5, 9, 9), (0, 0, 20, 20)], [0.67, 0.53],
               probs=[[0.05, 0.67, 0.28], [0.27, 0.2, 0.53]])
    mask, used, _ = lesion_mask(r, 0.5)
    assert used == [0] and mask.sum() == 16
    # Its class probabilities do not dilute the lesion's either.
    np.testing.assert_allclose(image_probabilities(r, used, ["BG", "a", "b"]), [0.67 / 0.95, 0.28 / 0.95],
                               rtol=1e-5)


def test_below_min_confidence_pieces_are_left_and_the_best_is_flagged():
    r = result([(2, 2, 10, 10), (8, 8, 10, 12)], [0.4, 0.3])
    mask, used, low = lesion_mask(r, 0.5)
    assert used == [0] and low and mask.sum() == 64


def test_empty_mask_falls_back_to_the_box_and_no_detection_to_empty():
    r = result([(3, 4, 7, 9)], [0.9])
    r["masks"][:] = False
    mask, used, _ = lesion_mask(r, 0.5)
    assert used == [0] and mask.sum() == 4 * 5 and mask[3:7, 4:9].all()
    empty = result([], [])
    mask, used, low = lesion_mask(empty, 0.5)
    assert used == [] and not mask.any() and not low
