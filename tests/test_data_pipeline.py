"""Training inputs: RPN targets, load_image_gt, augmentation, and the DataGenerator's skipping."""
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mrcnn import boxes as B  # noqa: E402
from mrcnn.data import DataGenerator, build_rpn_targets, load_image_gt  # noqa: E402
from mrcnn.images import expand_mask, parse_image_meta  # noqa: E402
from mrcnn_shapes import COLOURS, ShapesConfig, ShapesDataset, make_shapes  # noqa: E402


class RPNConfig(ShapesConfig):
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64


# --------------------------------------------------------- build_rpn_targets

GT1 = [10, 10, 30, 30]    # 20 x 20
GT2 = [60, 0, 80, 10]     # 20 x 10: no anchor reaches IoU 0.7
HAND_ANCHORS = np.array([
    [10, 10, 30, 30],     # 0: IoU 1.0 with GT1            -> positive
    [12, 10, 32, 30],     # 1: IoU 360/440 = 0.82          -> positive (>= 0.7)
    [15, 10, 35, 30],     # 2: IoU 300/500 = 0.60          -> neutral
    [50, 50, 70, 70],     # 3: IoU 0                       -> negative
    [20, 10, 40, 30],     # 4: IoU 200/600 = 0.33          -> neutral
    [22, 10, 42, 30],     # 5: IoU 160/640 = 0.25          -> negative (< 0.3)
    [60, 0, 80, 20],      # 6: IoU 200/400 = 0.5 with GT2, its best anchor -> positive
], np.float64)


def test_build_rpn_targets_hand_worked():
    config = RPNConfig()
    gt_boxes = np.array([GT1, GT2])
    match, deltas = build_rpn_targets((64, 64, 3), HAND_ANCHORS, np.array([1, 2], np.int32), gt_boxes, config)
    np.testing.assert_array_equal(match, [1, 1, 0, -1, 0, -1, 1])
    assert deltas.shape == (config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4)
    # Positives in anchor order (0, 1, 6), each against its best gt, divided by RPN_BBOX_STD_DEV.
    expected = np.array([[0, 0, 0, 0],
                         [-2 / 20 / 0.1, 0, 0, 0],                     # centre 2 px lower, same size
                         [0, -5 / 20 / 0.1, 0, np.log(0.5) / 0.2]])    # centre 5 px left, half as wide
    np.testing.assert_allclose(deltas[:3], expected, atol=1e-5)
    np.testing.assert_allclose(
        deltas[:3], B.box_refinement(HAND_ANCHORS[[0, 1, 6]], gt_boxes[[0, 0, 1]]) / config.RPN_BBOX_STD_DEV,
        atol=1e-6)
    assert np.all(deltas[3:] == 0), "rows after the positives are zero padding"


def test_build_rpn_targets_positive_iou_threshold_is_configurable():
    """RPN_POSITIVE_IOU 0.5 makes anchor 2 (IoU 0.60) positive; RPN_NEGATIVE_IOU 0.26 keeps anchor 5 neutral."""
    class Loose(RPNConfig):
        RPN_POSITIVE_IOU = 0.5
        RPN_NEGATIVE_IOU = 0.26
    match, _ = build_rpn_targets((64, 64, 3), HAND_ANCHORS, np.array([1, 2], np.int32),
                                 np.array([GT1, GT2]), Loose())
    np.testing.assert_array_equal(match, [1, 1, 1, -1, 0, -1, 1])
    class Looser(RPNConfig):
        RPN_POSITIVE_IOU = 0.5
        RPN_NEGATIVE_IOU = 0.2
    match, _ = build_rpn_targets((64, 64, 3), HAND_ANCHORS, np.array([1, 2], np.int32),
                                 np.array([GT1, GT2]), Looser())
    np.testing.assert_array_equal(match, [1, 1, 1, -1, 0, 0, 1])


def test_build_rpn_targets_balances_the_sample():
    class Small(RPNConfig):
        RPN_TRAIN_ANCHORS_PER_IMAGE = 8

    config = Small()
    rng = np.random.default_rng(0)
    positives = np.array([[10, 10, 30, 30]] * 10, np.float64) + rng.uniform(0, 1, (10, 1))
    negatives = np.array([[40 + i, 40, 50 + i, 50] for i in range(20)], np.float64)
    anchors = np.concatenate([positives, negatives])
    for _ in range(3):
        match, deltas = build_rpn_targets((64, 64, 3), anchors, np.array([1], np.int32),
                                          np.array([GT1]), config)
        n_pos, n_neg = int(np.sum(match == 1)), int(np.sum(match == -1))
        assert n_pos == 4, "positives are capped at half the sample"
        assert n_pos + n_neg == 8, "negatives fill the rest of the sample"
        assert np.all(match[10:] <= 0) and np.all(match[:10] >= 0)
        kept = np.where(match == 1)[0]
        np.testing.assert_allclose(
            deltas[:4], B.box_refinement(anchors[kept], np.array([GT1] * 4)) / config.RPN_BBOX_STD_DEV,
            atol=1e-6)


def test_build_rpn_targets_crowd_boxes_make_no_negatives():
    config = RPNConfig()
    crowd = [40, 40, 60, 60]
    anchors = np.array([[41, 41, 59, 59], [0, 0, 5, 5], [10, 10, 30, 30]], np.float64)
    match, _ = build_rpn_targets((64, 64, 3), anchors, np.array([1, -1], np.int32),
                                 np.array([GT1, crowd]), config)
    np.testing.assert_array_equal(match, [0, -1, 1])


# ------------------------------------------------------------ load_image_gt

def test_load_image_gt_shapes_meta_and_boxes():
    config = ShapesConfig()
    dataset = make_shapes(3, height=48, width=80, seed=1)
    for image_id in dataset.image_ids:
        image, meta, class_ids, bbox, mini = load_image_gt(dataset, config, image_id)
        assert image.shape == tuple(config.IMAGE_SHAPE) and image.dtype == np.uint8
        n = len(dataset.image_info[image_id]["shapes"])
        assert mini.shape == tuple(config.MINI_MASK_SHAPE) + (n,) and mini.dtype == bool
        parsed = parse_image_meta(meta[None])
        assert parsed["image_id"][0] == image_id
        np.testing.assert_array_equal(parsed["original_image_shape"][0], [48, 80, 3])
        np.testing.assert_array_equal(parsed["image_shape"][0], config.IMAGE_SHAPE)
        np.testing.assert_array_equal(parsed["window"][0], [13, 0, 51, 64])   # 80 -> 64: 38 rows, padded
        np.testing.assert_allclose(parsed["scale"][0], 0.8)
        np.testing.assert_array_equal(parsed["active_class_ids"][0], [1, 1, 1])
        np.testing.assert_array_equal(class_ids, [s[0] for s in dataset.image_info[image_id]["shapes"]])
        wy1, wx1, wy2, wx2 = parsed["window"][0]
        assert np.all(bbox[:, 0] >= wy1) and np.all(bbox[:, 1] >= wx1)
        assert np.all(bbox[:, 2] <= wy2) and np.all(bbox[:, 3] <= wx2)
        # Full-size masks agree with the mini masks and the boxes.
        _, _, _, bbox_full, full = load_image_gt(dataset, config, image_id, use_mini_mask=False)
        assert full.shape == tuple(config.IMAGE_SHAPE[:2]) + (n,)
        np.testing.assert_array_equal(B.extract_bboxes(full), bbox)
        np.testing.assert_array_equal(bbox_full, bbox)
        iou = np.diag(B.compute_overlaps_masks(expand_mask(bbox, mini, image.shape), full))
        assert np.all(iou > 0.8), f"mini masks expand back to the full masks (IoU {iou})"


def test_separated_shapes_keep_their_whole_masks_apart():
    """ShapesDataset(separate=True), the learning test's data: no shape hides or touches another."""
    dataset = ShapesDataset()
    dataset.load(32, seed=1, separate=True)
    dataset.prepare()
    counts = []
    for image_id in dataset.image_ids:
        shapes = dataset.image_info[image_id]["shapes"]
        masks, class_ids = dataset.load_mask(image_id)
        counts.append(len(shapes))
        for j, (_, y, x, half) in enumerate(shapes):
            assert masks[:, :, j].sum() > 0
            whole = np.zeros(masks.shape[:2], np.uint8)
            ShapesDataset._draw(whole, *shapes[j][:1], y, x, half, 1)
            np.testing.assert_array_equal(masks[:, :, j], whole.astype(bool))  # nothing drawn over it
            for _, y0, x0, half0 in shapes[:j]:
                assert max(abs(y - y0), abs(x - x0)) >= half + half0 + 3
    assert 1 in counts and 2 in counts, counts


def test_load_image_gt_horizontal_flip_moves_mask_with_image():
    config = ShapesConfig()
    dataset = make_shapes(2, seed=2)  # 64 x 64: no resize, so the flip is exact
    flip = A.Compose([A.HorizontalFlip(p=1.0)])
    for image_id in dataset.image_ids:
        image, _, ids, bbox, mask = load_image_gt(dataset, config, image_id, use_mini_mask=False)
        image_f, _, ids_f, bbox_f, mask_f = load_image_gt(dataset, config, image_id, augmentation=flip,
                                                          use_mini_mask=False)
        np.testing.assert_array_equal(image_f, image[:, ::-1])
        np.testing.assert_array_equal(mask_f, mask[:, ::-1], err_msg="the mask must flip with the image")
        np.testing.assert_array_equal(ids_f, ids)
        np.testing.assert_array_equal(bbox_f[:, [1, 3]], 64 - bbox[:, [3, 1]])
        for j, class_id in enumerate(ids_f):  # mask pixels carry the shape's colour in the flipped image
            assert np.all(image_f[mask_f[:, :, j]] == COLOURS[class_id])


# ------------------------------------------------------------ DataGenerator

class BrokenShapes(ShapesDataset):
    """Image 0 cannot be decoded."""

    def load_image(self, image_id):
        if image_id == 0:
            raise ValueError("shapes://0: cannot decode image (truncated file)")
        return super().load_image(image_id)


def test_data_generator_skips_unreadable_image_once(caplog):
    config = ShapesConfig()
    dataset = BrokenShapes()
    dataset.load(4, seed=3)
    dataset.prepare()
    generator = DataGenerator(dataset, config, shuffle=False, workers=1)
    with caplog.at_level(logging.WARNING, logger="mrcnn.data"):
        first = generator[0]
        second = generator[0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "shapes://0" in r.getMessage()]
    assert len(warnings) == 1, f"one warning per bad image, got {[r.getMessage() for r in caplog.records]}"
    assert len(generator.skipped) == 1
    assert generator.skipped[0]["file"] == "shapes://0"
    assert "truncated" in generator.skipped[0]["reason"]
    for batch in (first, second):
        assert batch["input_image"].shape == (config.BATCH_SIZE,) + tuple(config.IMAGE_SHAPE)
        for i in range(config.BATCH_SIZE):
            assert batch["input_image_meta"][i, 0] in (1, 2, 3), "the bad image must not be in the batch"
            assert np.any(batch["input_gt_class_ids"][i] > 0), "every slot of the batch is filled"
            assert np.any(batch["input_rpn_match"][i] == 1)
    # The replacement is the next image in order.
    np.testing.assert_array_equal(first["input_image_meta"][:, 0], [1, 2])


def test_data_generator_batch_layout():
    config = ShapesConfig()
    dataset = make_shapes(3, seed=4)
    generator = DataGenerator(dataset, config, shuffle=False, workers=1)
    batch = generator[0]
    anchors = generator.anchors.shape[0]
    expected = {
        "input_image": (2, 64, 64, 3), "input_image_meta": (2, config.IMAGE_META_SIZE),
        "input_rpn_match": (2, anchors, 1), "input_rpn_bbox": (2, config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4),
        "input_gt_class_ids": (2, config.MAX_GT_INSTANCES), "input_gt_boxes": (2, config.MAX_GT_INSTANCES, 4),
        "input_gt_masks": (2, 28, 28, config.MAX_GT_INSTANCES),
    }
    assert {k: v.shape for k, v in batch.items()} == expected
    image, _, class_ids, bbox, _ = load_image_gt(dataset, config, 0)
    np.testing.assert_allclose(batch["input_image"][0], image.astype(np.float32) - config.MEAN_PIXEL, atol=1e-4)
    n = len(class_ids)
    np.testing.assert_array_equal(batch["input_gt_class_ids"][0, :n], class_ids)
    np.testing.assert_array_equal(batch["input_gt_boxes"][0, :n], bbox)
    assert np.all(batch["input_gt_class_ids"][0, n:] == 0) and np.all(batch["input_gt_boxes"][0, n:] == 0)


def test_sharded_batches_say_their_dataset_never_ends():
    # An infinite dataset is what keeps MultiWorkerMirroredStrategy from adding its partial-batch
    # handling, which leaves the batch dimension unknown in the traced step (mrcnn.distribute).
    import tensorflow as tf
    from mrcnn.distribute import ShardedBatches, shard_order
    config = ShapesConfig()
    dataset = make_shapes(5, seed=4)
    source = ShardedBatches(dataset, config, seed=3, start_epoch=0, steps=2)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    data = source.dataset_fn(context)
    assert int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY)
    assert all(spec.shape[0] == config.IMAGES_PER_GPU for spec in data.element_spec.values())
    # Three epochs of two steps from pipeline 1 (replica 1 of 2): its shard of each epoch's permutation.
    ids = [parse_image_meta(item["input_image_meta"].numpy())["image_id"].tolist() for item in data.take(6)]
    expected = []
    for epoch in range(3):
        shard = shard_order(dataset.image_ids, 3, epoch, 1, 2)
        expected += [[int(shard[(step * config.IMAGES_PER_GPU + k) % len(shard)]) for k in range(config.IMAGES_PER_GPU)]
                     for step in range(2)]
    assert ids == expected


def test_data_generator_refuses_empty_dataset():
    dataset = ShapesDataset()
    dataset.prepare()
    with pytest.raises(ValueError, match="no images"):
        DataGenerator(dataset, ShapesConfig(), workers=1)
