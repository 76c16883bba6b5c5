"""Mask AP: hand-worked cases, and agreement with pycocotools' COCOeval."""
import contextlib
import io

import numpy as np
import pytest

from mrcnn import metrics
from mrcnn.boxes import extract_bboxes


def _masks(shape, rects):
    """bool [H, W, N] masks from [(y1, x1, y2, x2)] rectangles."""
    masks = np.zeros(shape + (len(rects),), dtype=bool)
    for index, (y1, x1, y2, x2) in enumerate(rects):
        masks[y1:y2, x1:x2, index] = True
    return masks


def _image(gt_rects, gt_classes, pred_rects, pred_classes, pred_scores, shape=(40, 40)):
    """A per-image record with boxes taken from the masks."""
    gt_masks = _masks(shape, gt_rects)
    pred_masks = _masks(shape, pred_rects)
    return {
        "gt_boxes": extract_bboxes(gt_masks), "gt_class_ids": np.array(gt_classes, dtype=np.int32),
        "gt_masks": gt_masks,
        "pred_boxes": extract_bboxes(pred_masks),
        "pred_class_ids": np.array(pred_classes, dtype=np.int32),
        "pred_scores": np.array(pred_scores, dtype=np.float32), "pred_masks": pred_masks,
    }


def _ap(record, iou_threshold=0.5):
    return metrics.compute_ap(*metrics._record_arrays(record), iou_threshold=iou_threshold)


A, B, C = (2, 2, 12, 12), (20, 20, 30, 30), (2, 25, 12, 35)


def test_perfect_predictions_give_ap_1():
    ap, precisions, recalls, overlaps = _ap(_image([A, B], [1, 1], [B, A], [1, 1], [0.6, 0.9]))
    assert ap == 1.0
    assert recalls[-2] == 1.0 and overlaps.shape == (2, 2)


def test_false_positive_ranked_above_true_positive():
    # Ranked: FP (0.9), TP (0.8) -> precision 1/2 at recall 1 -> AP 0.5.
    ap, precisions, recalls, _ = _ap(_image([A], [1], [C, A], [1, 1], [0.9, 0.8]))
    assert ap == pytest.approx(0.5)
    np.testing.assert_allclose(recalls, [0, 0, 1, 1])
    np.testing.assert_allclose(precisions, [0.5, 0.5, 0.5, 0])


def test_false_positive_ranked_below_is_free():
    ap = _ap(_image([A], [1], [C, A], [1, 1], [0.1, 0.8]))[0]
    assert ap == 1.0


def test_missed_instance_halves_ap():
    ap = _ap(_image([A, B], [1, 1], [A], [1], [0.9]))[0]
    assert ap == pytest.approx(0.5)


def test_wrong_class_and_low_iou_do_not_match():
    assert _ap(_image([A], [1], [A], [2], [0.9]))[0] == 0.0
    shifted = (2, 9, 12, 19)  # IoU with A = 30 / 170
    assert _ap(_image([A], [1], [shifted], [1], [0.9]))[0] == 0.0


def test_duplicate_detection_is_a_false_positive():
    gt_match, pred_match, _ = metrics.compute_matches(
        *metrics._record_arrays(_image([A], [1], [A, A], [1, 1], [0.9, 0.8])))
    np.testing.assert_array_equal(pred_match, [0, -1])
    np.testing.assert_array_equal(gt_match, [0])


def test_iou_exactly_at_threshold_matches():
    half = (2, 2, 12, 7)  # 50 of 100 pixels -> IoU 0.5
    assert _ap(_image([A], [1], [half], [1], [0.9]), iou_threshold=0.5)[0] == 1.0


def test_no_ground_truth_is_nan_and_no_predictions_is_zero():
    assert np.isnan(_ap(_image([], [], [A], [1], [0.9]))[0])
    assert _ap(_image([A], [1], [], [], []))[0] == 0.0


def test_zero_padding_is_trimmed():
    record = _image([A], [1], [A], [1], [0.9])
    record["gt_boxes"] = np.vstack([record["gt_boxes"], np.zeros((2, 4))])
    record["gt_class_ids"] = np.array([1, 0, 0])
    record["gt_masks"] = np.concatenate([record["gt_masks"], np.zeros((40, 40, 2), bool)], -1)
    assert _ap(record)[0] == 1.0
    np.testing.assert_array_equal(metrics.trim_zeros(np.array([[1, 2], [0, 0], [0, 3]])),
                                  [[1, 2], [0, 3]])


def test_score_threshold_drops_low_scores():
    arrays = metrics._record_arrays(_image([A], [1], [A, C], [1, 1], [0.9, 0.1]))
    _, pred_match, _ = metrics.compute_matches(*arrays, score_threshold=0.5)
    assert len(pred_match) == 1


def test_compute_ap_range():
    # 70 of 100 pixels -> IoU exactly 0.7: matched at 0.50..0.70 (5 of 10),
    # with COCO's thresholds (np.arange's 0.7000000000000002 would reject it).
    inner = (2, 2, 9, 12)
    record = _image([A], [1], [inner], [1], [0.9])
    assert metrics.compute_ap_range(*metrics._record_arrays(record), verbose=0) == \
        pytest.approx(0.5)
    assert metrics.compute_ap_range(*metrics._record_arrays(record),
                                    iou_thresholds=[0.5, 0.9], verbose=1) == pytest.approx(0.5)


def test_compute_recall():
    gt_boxes = np.array([A, B], dtype=float)
    recall, positive_ids = metrics.compute_recall(np.array([A, C], dtype=float), gt_boxes, 0.5)
    assert recall == 0.5
    np.testing.assert_array_equal(positive_ids, [0])


def test_evaluate_detections_means_per_image_ap():
    records = [_image([A], [1], [A], [1], [0.9]),                 # AP 1
               _image([A], [1], [C, A], [1, 1], [0.9, 0.8]),      # AP 0.5
               _image([], [], [A], [1], [0.9])]                   # no GT: left out
    result = metrics.evaluate_detections(records)
    assert result["mAP50"] == pytest.approx(0.75)
    assert result["mAP"] == pytest.approx(0.75)
    assert result["images"] == 2 and result["images_without_gt"] == 1
    detect_style = [{"gt_class_ids": r["gt_class_ids"], "gt_masks": r["gt_masks"],
                     "rois": r["pred_boxes"], "class_ids": r["pred_class_ids"],
                     "scores": r["pred_scores"], "masks": r["pred_masks"]} for r in records]
    assert metrics.evaluate_detections(detect_style) == result
    assert metrics.evaluate_detections([])["mAP"] is None


# --------------------------------------------------------------------------
# Agreement with pycocotools
# --------------------------------------------------------------------------

def _random_detection_set(seed, images=12, shape=(48, 48)):
    """Single-class records: 1-3 lesions per image, jittered / missed / spurious predictions.

    Every image has ground truth, so each one has a COCO AP of its own.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    records = []

    def blob():
        cy, cx = rng.uniform(8, shape[0] - 8), rng.uniform(8, shape[1] - 8)
        ry, rx = rng.uniform(3, 9), rng.uniform(3, 9)
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1, (cy, cx, ry, rx)

    for _ in range(images):
        gt_masks, preds = [], []
        for _ in range(rng.integers(1, 4)):
            mask, (cy, cx, ry, rx) = blob()
            gt_masks.append(mask)
            if rng.random() < 0.8:  # detected, jittered: IoUs spread around 0.5
                jy, jx = rng.normal(0, 1.5, 2)
                sy, sx = rng.uniform(0.75, 1.25, 2)
                preds.append(((yy - cy - jy) / (ry * sy)) ** 2
                             + ((xx - cx - jx) / (rx * sx)) ** 2 <= 1)
        for _ in range(rng.integers(0, 3)):  # spurious
            preds.append(blob()[0])
        preds = [p for p in preds if p.any()]
        gt = np.stack(gt_masks, axis=-1)
        pred = np.stack(preds, axis=-1) if preds else np.zeros(shape + (0,), bool)
        records.append({
            "gt_boxes": extract_bboxes(gt), "gt_class_ids": np.ones(gt.shape[-1], np.int32),
            "gt_masks": gt, "pred_boxes": extract_bboxes(pred),
            "pred_class_ids": np.ones(pred.shape[-1], np.int32),
            "pred_scores": rng.random(pred.shape[-1]), "pred_masks": pred,
        })
    return records


def _coco_ap50(records, image_ids=None):
    """pycocotools segm AP at IoU 0.5 (101-point, pooled over the given images)."""
    COCO = pytest.importorskip("pycocotools.coco").COCO
    COCOeval = pytest.importorskip("pycocotools.cocoeval").COCOeval
    from skinlesion.coco import detections_to_coco, gt_to_coco

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_to_coco(records, ["BG", "lesion"])
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(detections_to_coco(records))
        evaluation = COCOeval(coco_gt, coco_dt, iouType="segm")
        evaluation.params.iouThrs = np.array([0.5])
        if image_ids is not None:
            evaluation.params.imgIds = image_ids
        evaluation.evaluate()
        evaluation.accumulate()
    # precision: [T=1, R=101, K=1, A=4 (all first), M=3 (100 last)]
    precision = evaluation.eval["precision"][0, :, 0, 0, -1]
    return float(precision[precision > -1].mean())


@pytest.fixture(scope="module")
def detection_set():
    return _random_detection_set(seed=3)


def test_pooled_101_point_ap_equals_pycocotools(detection_set):
    # Same pooling and same interpolation: must agree to rounding.
    ours = metrics.compute_pooled_ap(detection_set, 0.5, recall_points=101)["mAP"]
    assert ours == pytest.approx(_coco_ap50(detection_set), abs=1e-9)


def test_pooled_all_point_ap_close_to_pycocotools(detection_set):
    # Same pooling, different interpolation: COCO samples the precision
    # envelope at 101 recall levels, VOC/Matterport integrates it exactly;
    # with ~25 ground-truth lesions the two differ by well under 0.02.
    ours = metrics.compute_pooled_ap(detection_set, 0.5)["mAP"]
    assert ours == pytest.approx(_coco_ap50(detection_set), abs=0.02)


def test_per_image_compute_ap_close_to_pycocotools(detection_set):
    # compute_ap is per image, COCO pools over images. Running COCOeval on one
    # image at a time removes the pooling difference; what is left is the
    # 101-point vs all-point interpolation, < 0.02 for 1-3 lesions per image.
    ours = [_ap(record)[0] for record in detection_set]
    coco = [_coco_ap50(detection_set, image_ids=[index + 1])
            for index in range(len(detection_set))]
    assert len(set(np.round(ours, 3))) > 2  # the set spans several AP values
    np.testing.assert_allclose(ours, coco, atol=0.02)
    assert metrics.evaluate_detections(detection_set, [0.5])["mAP50"] == \
        pytest.approx(np.mean(coco), abs=0.02)
