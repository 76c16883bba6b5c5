"""Graph layers against their numpy twins on random inputs (same function, two implementations)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn import boxes as B  # noqa: E402
from mrcnn import box_graph as G  # noqa: E402
from mrcnn import reference  # noqa: E402
from mrcnn.config import Config  # noqa: E402
from mrcnn.detection import DetectionLayer  # noqa: E402
from mrcnn.images import compose_image_meta  # noqa: E402
from mrcnn.proposals import ProposalLayer  # noqa: E402
from mrcnn.roi_align import PyramidROIAlign, roi_levels  # noqa: E402
from mrcnn.targets import DetectionTargetLayer  # noqa: E402

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)


def random_boxes(rng, count, min_side=0.05, max_side=0.5):
    """Normalized boxes [count, 4] inside [0, 1] with sides in [min_side, max_side]."""
    sides = rng.uniform(min_side, max_side, size=(count, 2))
    corners = rng.uniform(0, 1, size=(count, 2)) * (1 - sides)
    return np.concatenate([corners, corners + sides], axis=1).astype(np.float32)


# ----------------------------------------------------------------- box ops

def test_apply_box_deltas_graph_matches_numpy():
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 200)
    deltas = rng.normal(0, 0.5, size=(200, 4)).astype(np.float32)
    expected = B.apply_box_deltas(boxes, deltas)
    got = G.apply_box_deltas_graph(tf.constant(boxes), tf.constant(deltas)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # Leading batch dims are allowed in the graph version.
    got_batched = G.apply_box_deltas_graph(tf.constant(boxes.reshape(2, 100, 4)),
                                           tf.constant(deltas.reshape(2, 100, 4))).numpy()
    np.testing.assert_allclose(got_batched.reshape(200, 4), expected, atol=1e-6)


def test_apply_box_deltas_graph_clamps_huge_log_deltas():
    boxes = tf.constant([[0.1, 0.1, 0.2, 0.2]])
    out = G.apply_box_deltas_graph(boxes, tf.constant([[0.0, 0.0, 500.0, 500.0]])).numpy()
    assert np.all(np.isfinite(out)), "a wild log(dh) must not overflow exp()"
    np.testing.assert_allclose(out[0, 2] - out[0, 0], 0.1 * np.exp(4.0), rtol=1e-5)


def test_box_refinement_graph_matches_numpy_and_inverts_apply():
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 150)
    gt = random_boxes(rng, 150)
    expected = B.box_refinement(boxes, gt)
    got = G.box_refinement_graph(tf.constant(boxes), tf.constant(gt)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    back = G.apply_box_deltas_graph(tf.constant(boxes), tf.constant(got)).numpy()
    np.testing.assert_allclose(back, gt, atol=1e-5)


def test_overlaps_graph_matches_numpy():
    rng = np.random.default_rng(2)
    boxes1 = random_boxes(rng, 40)
    boxes2 = np.concatenate([random_boxes(rng, 30), boxes1[:5],                 # identical pairs
                             [[2.0, 2.0, 3.0, 3.0]]]).astype(np.float32)     # disjoint from all
    expected = B.compute_overlaps(boxes1, boxes2)
    got = G.overlaps_graph(tf.constant(boxes1), tf.constant(boxes2)).numpy()
    assert got.shape == (40, 36)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(np.diag(got[:5, 30:35]), 1.0, atol=1e-6)
    assert np.all(got[:, -1] == 0)


def test_scale_boxes_graph_matches_numpy_and_stays_in_the_image():
    rng = np.random.default_rng(3)
    boxes = np.concatenate([random_boxes(rng, 30), [[0.0, 0.0, 1.0, 1.0], [0.4, 0.4, 0.6, 0.6]]]).astype(np.float32)
    for factor in (1.0, 1.2, 2.0):
        expected = B.scale_boxes(boxes, factor)
        np.testing.assert_allclose(G.scale_boxes_graph(tf.constant(boxes), factor).numpy(), expected, atol=1e-6)
        assert expected.min() >= 0 and expected.max() <= 1
    np.testing.assert_allclose(B.scale_boxes(boxes, 1.0), boxes, atol=1e-7)
    np.testing.assert_allclose(B.scale_boxes(boxes[-1:], 1.5), [[0.35, 0.35, 0.65, 0.65]], atol=1e-6)
    np.testing.assert_allclose(B.scale_boxes(boxes[-2:-1], 1.5), [[0.0, 0.0, 1.0, 1.0]])  # clipped


def test_masks_are_pasted_into_the_grown_boxes_the_mask_head_saw():
    """DETECTION_MASK_BOX_SCALE: rois stay the detected boxes, masks fill the grown ones."""
    from types import SimpleNamespace
    from mrcnn.detection import DetectionBoxes
    from mrcnn.model import MaskRCNN

    detections = np.zeros((1, 4, 6), np.float32)
    detections[0, 0] = [0.25, 0.25, 0.75, 0.75, 1, 0.9]
    mask = np.ones((1, 4, 28, 28, 2), np.float32)  # the head says "all lesion" over its whole box
    grown = DetectionBoxes(1.2)(tf.constant(detections)).numpy()
    np.testing.assert_allclose(grown, [[[0.2, 0.2, 0.8, 0.8]]], atol=1e-6)
    np.testing.assert_allclose(DetectionBoxes()(tf.constant(detections)).numpy(), detections[:, :1, :4])
    areas = {}
    for factor in (1.0, 1.2):
        owner = SimpleNamespace(config=SimpleNamespace(DETECTION_MASK_BOX_SCALE=factor, NUM_CLASSES=2,
                                                       DETECTION_MASK_THRESHOLD=0.5))
        boxes, class_ids, _, masks, _ = MaskRCNN.unmold_detections(
            owner, detections[0], mask[0], (100, 100, 3), (100, 100, 3), (0, 0, 100, 100))
        assert boxes.tolist() == [[25, 25, 75, 75]] and class_ids.tolist() == [1]
        areas[factor] = int(masks[..., 0].sum())
        rows, cols = np.where(masks[..., 0])
        areas[f"{factor} extent"] = (rows.min(), rows.max(), cols.min(), cols.max())
    assert areas[1.0] == 50 * 50 and areas["1.0 extent"] == (25, 74, 25, 74)
    assert areas[1.2] == 60 * 60 and areas["1.2 extent"] == (20, 79, 20, 79)


# ----------------------------------------------------------- ProposalLayer

def proposals_reference(probs, deltas, anchors, count, nms_threshold, pre_nms_limit, std):
    """Numpy ProposalLayer for one image: ([count, 4] zero-padded, survivors)."""
    return reference.rpn_proposals(probs[:, 1], deltas, anchors, std, pre_nms_limit, nms_threshold, count)


def test_proposal_layer_matches_numpy_reference():
    rng = np.random.default_rng(3)
    batch, num_anchors, count, pre_nms, nms = 2, 400, 100, 150, 0.7
    # Jittered copies of a few base boxes, some poking out of the image, so
    # NMS removes many (padding appears) and clipping matters.
    base = random_boxes(rng, 12, 0.1, 0.6) + rng.uniform(-0.15, 0.15, size=(12, 1)).astype(np.float32)
    anchors = base[rng.integers(0, 12, size=num_anchors)] + rng.normal(0, 0.02, (num_anchors, 4))
    anchors = np.broadcast_to(anchors.astype(np.float32), (batch, num_anchors, 4)).copy()
    logits = rng.normal(0, 2, size=(batch, num_anchors, 2)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    deltas = rng.normal(0, 1, size=(batch, num_anchors, 4)).astype(np.float32)

    layer = ProposalLayer(count, nms, pre_nms, STD)
    got = layer([tf.constant(probs), tf.constant(deltas), tf.constant(anchors)]).numpy()
    assert got.shape == (batch, count, 4)
    kept_counts = []
    for b in range(batch):
        expected, kept = proposals_reference(probs[b], deltas[b], anchors[b], count, nms, pre_nms, STD)
        kept_counts.append(kept)
        np.testing.assert_allclose(got[b], expected, atol=1e-5,
                                   err_msg=f"image {b}: proposals differ from top-k + deltas*std + clip + NMS")
        assert np.all(got[b, kept:] == 0), "rows after the NMS survivors must be zero padding"
        assert np.all((got[b, :kept] >= 0) & (got[b, :kept] <= 1)), "proposals are clipped to [0, 1]"
    assert min(kept_counts) < count, "test setup: expected NMS to leave fewer than proposal_count boxes"


def test_proposal_layer_pre_nms_limit_larger_than_anchor_count():
    rng = np.random.default_rng(4)
    anchors = random_boxes(rng, 30)[None]
    probs = rng.dirichlet([1, 1], size=(1, 30)).astype(np.float32)
    deltas = rng.normal(0, 0.5, size=(1, 30, 4)).astype(np.float32)
    got = ProposalLayer(10, 0.7, 6000, STD)([tf.constant(probs), tf.constant(deltas),
                                              tf.constant(anchors)]).numpy()
    expected, _ = proposals_reference(probs[0], deltas[0], anchors[0], 10, 0.7, 6000, STD)
    np.testing.assert_allclose(got[0], expected, atol=1e-5)


# --------------------------------------------------------- PyramidROIAlign

def test_pyramid_roi_align_levels_and_crops():
    rng = np.random.default_rng(5)
    batch, num_boxes, channels, pool = 2, 40, 3, (5, 4)
    image_shape = (1024, 1024)  # big enough that ROI sizes span all of P2..P5
    maps = [rng.normal(size=(batch, 1024 // s, 1024 // s, channels)).astype(np.float32)
            for s in (64, 128, 256, 512)]  # small maps: crop_and_resize works in normalized coords
    # Log-uniform sides from ~10 px to ~1000 px.
    sides = np.exp(rng.uniform(np.log(0.01), np.log(0.98), size=(batch, num_boxes, 2)))
    corners = rng.uniform(0, 1, size=(batch, num_boxes, 2)) * (1 - sides)
    boxes = np.concatenate([corners, corners + sides], axis=-1).astype(np.float32)

    # Level formula (FPN paper): 4 + round(log2(sqrt(area_px) / 224)), clipped to 2..5.
    side_px = np.sqrt((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])) * 1024
    expected_levels = np.clip(4 + np.round(np.log2(side_px / 224.0)), 2, 5).astype(np.int32)
    levels = roi_levels(tf.constant(boxes), image_shape).numpy()
    np.testing.assert_array_equal(levels, expected_levels)
    assert set(np.unique(levels)) == {2, 3, 4, 5}, "test setup: every level should be used"

    layer = PyramidROIAlign(pool, image_shape + (3,))
    got = layer([tf.constant(boxes)] + [tf.constant(m) for m in maps]).numpy()
    assert got.shape == (batch, num_boxes) + pool + (channels,)
    flat_boxes = boxes.reshape(-1, 4)
    box_batch = np.repeat(np.arange(batch), num_boxes).astype(np.int32)
    crops = {level: tf.image.crop_and_resize(maps[level - 2], flat_boxes, box_batch, pool).numpy()
             for level in range(2, 6)}
    for b in range(batch):
        for n in range(num_boxes):
            expected = crops[expected_levels[b, n]][b * num_boxes + n]
            np.testing.assert_allclose(got[b, n], expected, atol=1e-5,
                                       err_msg=f"box {n} of image {b}: wrong crop, level or order")


# ---------------------------------------------------- DetectionTargetLayer

class TargetConfig(Config):
    NAME = "targets"
    NUM_CLASSES = 3
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    TRAIN_ROIS_PER_IMAGE = 12
    ROI_POSITIVE_RATIO = 0.33      # positive budget int(12 * 0.33) = 3
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)
    MASK_SHAPE = [28, 28]
    MASK_POOL_SIZE = 14


GT_BOXES = np.array([[0.10, 0.10, 0.40, 0.40],     # class 1
                     [0.55, 0.50, 0.90, 0.95],     # class 2
                     [0.05, 0.60, 0.35, 0.95]],    # crowd (class id -1)
                    np.float32)
GT_CLASS_IDS = np.array([1, 2, -1], np.int32)


def disc_mini_mask(shape, cy, cx, radius):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2).astype(np.float32)


def run_targets(proposals, gt_boxes, gt_class_ids, gt_masks, config):
    """Call DetectionTargetLayer on one image; returns numpy rois, class_ids, deltas, masks."""
    layer = DetectionTargetLayer(config)
    outs = layer([tf.constant(proposals[None]), tf.constant(gt_class_ids[None]),
                  tf.constant(gt_boxes[None]), tf.constant(gt_masks[None])])
    return [o.numpy()[0] for o in outs]


@pytest.fixture(scope="module")
def target_case():
    config = TargetConfig()
    shifted = GT_BOXES[0] + np.array([0.01, -0.01, 0.02, 0.0], np.float32)
    proposals = np.zeros((20, 4), np.float32)  # zero rows are padding
    proposals[:8] = [GT_BOXES[0] + 0.005 * k for k in range(4)] + \
                    [GT_BOXES[1] - 0.005 * k for k in range(3)] + [shifted]   # 8 positive candidates
    proposals[8] = [0.6, 0.05, 0.9, 0.3]       # negative (IoU 0 with all gt)
    proposals[9] = [0.1, 0.3, 0.4, 0.7]        # negative (IoU < 0.5), also touches the crowd box
    proposals[10] = GT_BOXES[2]                # on the crowd box: neither positive nor negative
    proposals[11] = [0.25, 0.25, 0.55, 0.55]   # IoU 0.14 with gt 0: negative
    gt_boxes = np.zeros((4, 4), np.float32)
    gt_boxes[:3] = GT_BOXES
    gt_ids = np.zeros(4, np.int32)
    gt_ids[:3] = GT_CLASS_IDS
    masks = np.zeros((56, 56, 4), np.float32)
    masks[:, :, 0] = disc_mini_mask((56, 56), 27.5, 27.5, 25)
    masks[:, :, 1] = 0
    masks[10:40, 5:50, 1] = 1
    masks[:, :, 2] = 1
    results = [run_targets(proposals, gt_boxes, gt_ids, masks, config) for _ in range(3)]
    return config, proposals, results


def test_detection_targets_positives_first_and_matched(target_case):
    config, proposals, results = target_case
    budget = int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO)
    non_crowd = GT_BOXES[:2]
    for rois, class_ids, deltas, masks in results:
        positive = class_ids > 0
        count = int(positive.sum())
        assert count == budget, f"8+2 candidates, budget {budget}: expected exactly {budget} positives"
        assert np.all(positive[:count]) and not np.any(positive[count:]), "positive ROIs must come first"
        iou = B.compute_overlaps(rois[:count], non_crowd)
        assert np.all(iou.max(axis=1) >= 0.5)
        best = iou.argmax(axis=1)
        np.testing.assert_array_equal(class_ids[:count], GT_CLASS_IDS[best])
        expected_deltas = B.box_refinement(rois[:count], non_crowd[best]) / config.BBOX_STD_DEV
        np.testing.assert_allclose(deltas[:count], expected_deltas, rtol=1e-4, atol=1e-5)


def test_detection_targets_negatives_padding_and_crowd(target_case):
    config, proposals, results = target_case
    for rois, class_ids, deltas, masks in results:
        count = int((class_ids > 0).sum())
        real = np.abs(rois).sum(axis=1) > 0
        negatives = rois[count:][real[count:]]
        # Candidates below 0.5 IoU and away from the crowd: rows 8, 11 (row 9 touches the crowd box).
        assert len(negatives) == 2, f"expected the 2 crowd-free negatives, got {negatives}"
        assert np.all(B.compute_overlaps(negatives, GT_BOXES[:2]).max(axis=1) < 0.5)
        assert np.all(B.compute_overlaps(negatives, GT_BOXES[2:]).max(axis=1) < 0.001)
        assert np.all(class_ids >= 0), "crowd class ids must never reach the targets"
        assert np.all(B.compute_overlaps(rois[real], GT_BOXES[2:]).max(axis=1) < 0.5), \
            "a proposal on a crowd box must not be used as a positive (or negative)"
        # Everything after the positives has zero deltas and masks; padding rows are all zero.
        assert np.all(deltas[count:] == 0) and np.all(masks[count:] == 0)
        pad = count + len(negatives)
        assert np.all(rois[pad:] == 0) and np.all(class_ids[pad:] == 0)
        assert rois.shape == (config.TRAIN_ROIS_PER_IMAGE, 4)
        assert masks.shape == (config.TRAIN_ROIS_PER_IMAGE, 28, 28)


def test_detection_targets_keep_proposal_order_and_repeat_when_nothing_is_left_out(target_case):
    config, proposals, results = target_case
    # Candidates: the non-zero proposals, then the non-crowd gt boxes (detection_targets_graph appends them).
    candidates = np.concatenate([proposals[np.abs(proposals).sum(axis=1) > 0], GT_BOXES[:2]])
    for rois, class_ids, _, _ in results:
        real = np.abs(rois).sum(axis=1) > 0
        count = int((class_ids > 0).sum())
        for part in (rois[:count], rois[count:][real[count:]]):  # positives, then negatives
            row = 0  # each ROI is a later candidate than the one before (a box may be a candidate twice)
            for roi in part:
                later = np.flatnonzero(np.all(candidates[row:] == roi, axis=1))
                assert later.size, f"sampled ROIs out of proposal order: {part}"
                row += int(later[0]) + 1
    # A budget that takes every candidate: the same targets, in the same order, at every call.
    class Everything(TargetConfig):
        TRAIN_ROIS_PER_IMAGE = 24
        ROI_POSITIVE_RATIO = 1.0

    gt_boxes = np.zeros((4, 4), np.float32)
    gt_boxes[:3] = GT_BOXES
    gt_ids = np.zeros(4, np.int32)
    gt_ids[:3] = GT_CLASS_IDS
    masks = np.zeros((56, 56, 4), np.float32)
    masks[:, :, :2] = 1
    first, *others = [run_targets(proposals, gt_boxes, gt_ids, masks, Everything()) for _ in range(3)]
    assert int((first[1] > 0).sum()) == 10, "8 positive proposals and the 2 gt boxes"
    for other in others:
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a, b)


def bilinear_align_corners(image, out_shape):
    """crop_and_resize of the whole image ([0, 0, 1, 1] box): sample points span corner to corner."""
    h, w = image.shape
    ys = np.arange(out_shape[0]) * (h - 1) / (out_shape[0] - 1)
    xs = np.arange(out_shape[1]) * (w - 1) / (out_shape[1] - 1)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def test_detection_targets_mask_of_roi_equal_to_gt_box_is_resized_mini_mask():
    config = TargetConfig()
    proposals = np.zeros((6, 4), np.float32)   # no proposals: only the appended gt box is a candidate
    gt_boxes = np.zeros((2, 4), np.float32)
    gt_boxes[0] = [0.2, 0.3, 0.7, 0.6]
    gt_ids = np.array([2, 0], np.int32)
    mini = np.zeros((56, 56, 2), np.float32)
    mini[:, :, 0] = disc_mini_mask((56, 56), 20.3, 30.7, 18)
    mini[5:15, 40:52, 0] = 1
    rois, class_ids, deltas, masks = run_targets(proposals, gt_boxes, gt_ids, mini, config)
    assert class_ids[0] == 2 and np.all(class_ids[1:] == 0)
    np.testing.assert_allclose(rois[0], gt_boxes[0], atol=1e-6)
    np.testing.assert_allclose(deltas[0], 0, atol=1e-5)
    soft = bilinear_align_corners(mini[:, :, 0], (28, 28))
    expected = np.round(soft)
    ambiguous = np.abs(soft - 0.5) < 1e-4
    assert np.all((masks[0] == expected) | ambiguous), "mask target differs from the resized mini mask"
    assert masks[0].sum() > 100


def test_detection_targets_image_without_instances():
    """An image with no gt (all padding) gives only negatives, no NaN."""
    config = TargetConfig()
    rng = np.random.default_rng(7)
    proposals = np.zeros((20, 4), np.float32)
    proposals[:15] = random_boxes(rng, 15)
    rois, class_ids, deltas, masks = run_targets(proposals, np.zeros((3, 4), np.float32),
                                                 np.zeros(3, np.int32), np.zeros((56, 56, 3), np.float32),
                                                 config)
    assert np.all(np.isfinite(rois)) and np.all(np.isfinite(deltas)) and np.all(np.isfinite(masks))
    assert np.all(class_ids == 0) and np.all(deltas == 0) and np.all(masks == 0)
    real = np.abs(rois).sum(axis=1) > 0
    assert real.sum() == config.TRAIN_ROIS_PER_IMAGE, "negatives fill the whole ROI budget"
    assert B.compute_overlaps(rois, proposals[:15]).max(axis=1).min() > 0.999, "ROIs are proposals"


# ----------------------------------------------------------- DetectionLayer

class DetectConfig(Config):
    NAME = "detect"
    NUM_CLASSES = 4
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    DETECTION_MAX_INSTANCES = 10
    DETECTION_MIN_CONFIDENCE = 0.3
    DETECTION_NMS_THRESHOLD = 0.3


def detections_reference(rois, probs, deltas, window, config):
    """Numpy DetectionLayer for one image: detections [D, 6], their probs [D, C], count."""
    return reference.detections(rois, probs, deltas, window, config.BBOX_STD_DEV, config.DETECTION_MIN_CONFIDENCE,
                                config.DETECTION_NMS_THRESHOLD, config.DETECTION_MAX_INSTANCES)


def test_detection_layer_matches_numpy_reference():
    config = DetectConfig()
    rng = np.random.default_rng(6)
    batch, num_rois, classes = 2, 80, config.NUM_CLASSES
    rois = np.stack([random_boxes(rng, num_rois, 0.05, 0.5) for _ in range(batch)])
    rois[1, 8:] = 0  # padding ROIs, as the ProposalLayer emits them
    logits = rng.normal(0, 2.5, size=(batch, num_rois, classes)).astype(np.float32)
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    deltas = rng.normal(0, 1, size=(batch, num_rois, classes, 4)).astype(np.float32)
    windows_px = [(8, 0, 56, 64), (0, 4, 64, 60)]
    metas = np.stack([compose_image_meta(i, (48, 64, 3) if i == 0 else (64, 56, 3), (64, 64, 3),
                                         windows_px[i], 1.0, np.ones(classes, np.int32))
                      for i in range(batch)])
    layer = DetectionLayer(config)
    detections, det_probs = [o.numpy() for o in layer(
        [tf.constant(rois), tf.constant(probs), tf.constant(deltas), tf.constant(metas)])]
    D = config.DETECTION_MAX_INSTANCES
    assert detections.shape == (batch, D, 6) and det_probs.shape == (batch, D, classes)
    counts = []
    for b in range(batch):
        window = B.norm_boxes(np.array(windows_px[b], np.float32), (64, 64))
        expected, expected_probs, count = detections_reference(rois[b], probs[b], deltas[b], window, config)
        counts.append(count)
        np.testing.assert_allclose(detections[b], expected, atol=1e-5, err_msg=f"image {b}")
        np.testing.assert_allclose(det_probs[b], expected_probs, atol=1e-6,
                                   err_msg=f"image {b}: probs rows must be the kept ROIs' input probs")
        assert np.all(detections[b, count:] == 0) and np.all(det_probs[b, count:] == 0)
    assert counts[0] == D and counts[1] < D, f"test setup: want one full and one padded image, got {counts}"
