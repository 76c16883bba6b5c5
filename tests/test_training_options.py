"""Training options beyond Matterport: Config.NORM (group norm), LR warm-up, and how lesions.py picks them."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import layers  # noqa: E402

import lesions  # noqa: E402
from mrcnn.backbone import backbone_model, norm_layer  # noqa: E402
from mrcnn.config import ConfigError  # noqa: E402
from mrcnn_shapes import ShapesConfig  # noqa: E402


class GroupConfig(ShapesConfig):
    NORM = "group"


def norm_layers(model):
    return {layer.name: layer for layer in model.layers
            if isinstance(layer, (layers.BatchNormalization, layers.GroupNormalization))}


def test_group_norm_backbone_keeps_matterport_names():
    batch = norm_layers(backbone_model(ShapesConfig()))
    group = norm_layers(backbone_model(GroupConfig()))
    assert set(batch) == set(group) and "bn_conv1" in group and "bn5c_branch2c" in group
    assert all(isinstance(layer, layers.GroupNormalization) for layer in group.values())
    # Group norm has no moving statistics: gamma and beta only.
    assert len(group["bn_conv1"].weights) == 2 and len(batch["bn_conv1"].weights) == 4


def test_group_norm_is_per_image_and_the_same_in_training_and_inference():
    layer = norm_layer("bn_x", kind="group")
    x = np.random.default_rng(0).normal(3.0, 2.0, (2, 5, 5, 48)).astype("float32")
    train = np.asarray(layer(x, training=True))
    infer = np.asarray(layer(x, training=False))
    np.testing.assert_allclose(train, infer, atol=1e-5)
    alone = np.asarray(layer(x[:1], training=False))
    np.testing.assert_allclose(alone, infer[:1], atol=1e-5)  # no dependence on the other image
    assert layer.groups == 24  # 48 channels: the largest divisor <= 32
    groups = infer.reshape(2, 5, 5, 24, 2)
    np.testing.assert_allclose(groups.mean(axis=(1, 2, 4)), 0, atol=1e-4)


def test_classifier_head_norm_groups_keep_each_rois_channel_relations():
    """CLASSIFIER_NORM_GROUPS=1: the head's 1x1 features are normalized per ROI over all channels (layer norm).

    With 32 groups of 64 channels every group is a pair, which normalizes to
    (-d, +d) with |d| near 1: all but the sign of each pair's difference is lost.
    """
    from mrcnn.config import Config
    from mrcnn.heads import fpn_classifier_graph

    features = np.random.default_rng(1).normal(2.0, 3.0, (6, 1, 1, 64)).astype("float32")
    pairs = np.asarray(norm_layer("bn_pairs", kind="group", groups=32)(features))
    np.testing.assert_allclose(pairs[..., 0::2], -pairs[..., 1::2], atol=1e-4)
    assert np.mean(np.abs(np.abs(pairs) - 1) < 0.01) > 0.9
    layer_norm = np.asarray(norm_layer("bn_layer", kind="group", groups=1)(features))
    expected = (features - features.mean(-1, keepdims=True)) / np.sqrt(features.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(layer_norm, expected, atol=1e-4)

    class HeadConfig(GroupConfig):
        CLASSIFIER_NORM_GROUPS = 1
    import keras
    rois = keras.Input((8, 4), batch_size=1)
    maps = [keras.Input((64 // s, 64 // s, 32), batch_size=1) for s in (4, 8, 16, 32)]
    head = keras.Model([rois] + maps, fpn_classifier_graph(rois, maps, 8, HeadConfig()))
    assert head.get_layer("mrcnn_class_bn1").groups == 1 and head.get_layer("mrcnn_class_bn2").groups == 1
    # A run saved before the field existed is rebuilt with what it was trained with: 32 groups.
    saved = GroupConfig().to_dict()
    del saved["CLASSIFIER_NORM_GROUPS"]
    assert GroupConfig.from_saved(saved).CLASSIFIER_NORM_GROUPS == 32
    assert Config.from_saved(HeadConfig().to_dict()).CLASSIFIER_NORM_GROUPS == 1

    class Bad(ShapesConfig):
        CLASSIFIER_NORM_GROUPS = 0
    with pytest.raises(ConfigError, match="CLASSIFIER_NORM_GROUPS"):
        Bad()


def test_norm_is_validated():
    class Bad(ShapesConfig):
        NORM = "layer"
    with pytest.raises(ConfigError, match="NORM"):
        Bad()

    class BadIoU(ShapesConfig):
        RPN_POSITIVE_IOU = 0.2
    with pytest.raises(ConfigError, match="RPN_POSITIVE_IOU"):
        BadIoU()


def test_lesions_uses_group_norm_from_scratch_and_batch_norm_for_pretrained_weights():
    scratch = lesions.make_config(lesions.parse_args(["--mode", "train"]), "train")
    assert scratch.NORM == "group" and scratch.RPN_CONV_CHANNELS == 256
    assert scratch.IMAGE_MAX_DIM == 192, "no --dataset: the demo settings"
    coco = lesions.make_config(lesions.parse_args(["--mode", "train", "--weights", "coco"]), "train")
    assert coco.NORM == "batch" and coco.RPN_CONV_CHANNELS == 512
    imagenet = lesions.make_config(lesions.parse_args(["--mode", "train", "--weights", "imagenet"]), "train")
    assert imagenet.NORM == "batch" and imagenet.RPN_CONV_CHANNELS == 256
    forced = lesions.make_config(lesions.parse_args(["--mode", "train", "--weights", "coco",
                                                     "--config", "NORM='group'"]), "train")
    assert forced.NORM == "group"
    # A run saved before NORM existed was trained with batch norm.
    old = lesions.make_config(lesions.parse_args(["--mode", "predict"]), "inference",
                              saved={"IMAGE_MAX_DIM": 64, "IMAGE_MIN_DIM": 64})
    assert old.NORM == "batch" and old.RPN_CONV_CHANNELS == 512 and old.IMAGE_MAX_DIM == 64


def test_warmup_schedule_rises_linearly_then_holds():
    from mrcnn.training import WarmupSchedule, learning_rate
    schedule = WarmupSchedule(0.001, 100)
    values = [float(schedule(step)) for step in (0, 49, 99, 100, 5000)]
    np.testing.assert_allclose(values, [0.00001, 0.0005, 0.001, 0.001, 0.001], rtol=1e-5)
    assert learning_rate(0.01, 0) == 0.01
    assert isinstance(learning_rate(0.01, 10), WarmupSchedule)


def test_cosine_schedule_warms_up_then_decays_to_one_percent():
    from mrcnn.training import CosineDecaySchedule, learning_rate
    schedule = learning_rate(0.001, 10, "cosine")
    assert isinstance(schedule, CosineDecaySchedule)
    np.testing.assert_allclose([float(schedule(0)), float(schedule(9)), float(schedule(500))],
                               [0.0001, 0.001, 0.001], rtol=1e-5)
    values = []
    for progress in (0.25, 0.5, 1.0, 1.5):
        schedule.progress.assign(progress)
        values.append(float(schedule(500)))
    half_way = 0.001 * (0.01 + 0.99 * 0.5)
    np.testing.assert_allclose(values, [0.001 * (0.01 + 0.99 * (1 + np.cos(np.pi / 4)) / 2), half_way,
                                        0.00001, 0.00001], rtol=1e-5)
    assert learning_rate(0.01, 0, "none") == 0.01


def test_decay_progress_follows_the_steps_or_the_deadline_whichever_comes_first(monkeypatch):
    from mrcnn import callbacks, training
    clock = [100.0]
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: clock[0])

    def advance(progress, steps, seconds):
        for _ in range(steps):
            clock[0] += seconds
            progress.on_train_batch_end(0)
        return float(progress.schedule.progress.numpy())

    by_steps = training.DecayProgress(training.CosineDecaySchedule(0.001, 0), total_steps=10)
    by_steps.on_train_begin()
    assert advance(by_steps, 5, 1.0) == pytest.approx(0.5)
    assert advance(by_steps, 10, 1.0) == pytest.approx(1.0)
    # 60 s budget at 10 s a step: the time runs out long before step 1000.
    by_time = training.DecayProgress(training.CosineDecaySchedule(0.001, 0), total_steps=1000, deadline=clock[0] + 60)
    by_time.on_train_begin()
    assert advance(by_time, 3, 10.0) == pytest.approx(0.5)
    assert advance(by_time, 3, 10.0) == pytest.approx(1.0)


def test_learning_rate_decay_is_validated():
    class Bad(ShapesConfig):
        LEARNING_RATE_DECAY = "linear"
    with pytest.raises(ConfigError, match="LEARNING_RATE_DECAY"):
        Bad()


def test_rpn_conv_channels_sets_the_shared_conv_width():
    from mrcnn.rpn import build_rpn_model
    rpn = build_rpn_model(1, 3, 32, channels=64)
    assert rpn.get_layer("rpn_conv_shared").kernel.shape == (3, 3, 32, 64)
    assert build_rpn_model(1, 3, 32).get_layer("rpn_conv_shared").kernel.shape == (3, 3, 32, 512)


class AgnosticConfig(GroupConfig):
    CLASS_AGNOSTIC_BOXES = True
    CLASS_AGNOSTIC_MASKS = True


def _heads(config, num_rois=3):
    """A functional model: rois [1, N, 4] + P2..P5 (8 channels) -> class, box and mask heads."""
    import keras
    from mrcnn.heads import build_fpn_mask_graph, fpn_classifier_graph
    rois = keras.Input((num_rois, 4), batch_size=1)
    sizes = [config.IMAGE_SHAPE[0] // s for s in config.BACKBONE_STRIDES[:4]]
    maps = [keras.Input((s, s, config.TOP_DOWN_PYRAMID_SIZE), batch_size=1) for s in sizes]
    _, probs, bbox = fpn_classifier_graph(rois, maps, num_rois, config)
    masks = build_fpn_mask_graph(rois, maps, num_rois, config)
    return keras.Model([rois] + maps, [probs, bbox, masks])


def test_class_agnostic_heads_share_one_box_and_one_mask_across_classes():
    import tensorflow as tf
    from mrcnn.losses import mrcnn_bbox_loss, mrcnn_mask_loss
    config = AgnosticConfig()
    model = _heads(config)
    assert model.get_layer("mrcnn_bbox_fc").kernel.shape[-1] == 4
    assert model.get_layer("mrcnn_mask").kernel.shape[-1] == 1
    rng = np.random.default_rng(0)
    rois = np.array([[[0.1, 0.1, 0.6, 0.6], [0.2, 0.3, 0.9, 0.8], [0.0, 0.0, 1.0, 1.0]]], "float32")
    maps = [rng.normal(size=(1,) + tuple(int(d) for d in t.shape[1:])).astype("float32") for t in model.inputs[1:]]
    probs, bbox, masks = model([rois] + maps)
    classes = config.NUM_CLASSES
    assert bbox.shape == (1, 3, classes, 4) and masks.shape == (1, 3, 28, 28, classes)
    for c in range(1, classes):
        np.testing.assert_array_equal(bbox[..., c, :], bbox[..., 0, :])
        np.testing.assert_array_equal(masks[..., c], masks[..., 0])
    # Targets of either class train the one shared output.
    for target_class in (1, 2):
        with tf.GradientTape() as tape:
            _, bbox, masks = model([rois] + maps)
            ids = tf.constant([[target_class, 0, 0]])
            loss = (mrcnn_bbox_loss(tf.ones((1, 3, 4)), ids, bbox)
                    + mrcnn_mask_loss(tf.ones((1, 3, 28, 28)), ids, masks))
        grads = tape.gradient(loss, [model.get_layer("mrcnn_bbox_fc").kernel,
                                     model.get_layer("mrcnn_mask").kernel])
        assert all(float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)


def test_per_class_heads_stay_matterport_by_default():
    model = _heads(GroupConfig())
    classes = GroupConfig.NUM_CLASSES
    assert model.get_layer("mrcnn_bbox_fc").kernel.shape[-1] == 4 * classes
    assert model.get_layer("mrcnn_mask").kernel.shape[-1] == classes


def test_lesion_config_is_class_agnostic_and_old_runs_load_per_class():
    scratch = lesions.make_config(lesions.parse_args(["--mode", "train"]), "train")
    assert scratch.CLASS_AGNOSTIC_BOXES and scratch.CLASS_AGNOSTIC_MASKS
    # A run saved before the fields existed had per-class heads.
    old = lesions.make_config(lesions.parse_args(["--mode", "predict"]), "inference",
                              saved={"IMAGE_MAX_DIM": 64, "IMAGE_MIN_DIM": 64})
    assert not old.CLASS_AGNOSTIC_BOXES and not old.CLASS_AGNOSTIC_MASKS
    assert old.PREPROCESS == "none"
    sog = lesions.make_config(lesions.parse_args(["--mode", "train", "--config", "PREPROCESS=shades_of_grey"]),
                              "train")
    assert sog.PREPROCESS == "shades_of_grey"
    # The run's preprocessing and heads come back with it; precision is per command.
    saved = {"IMAGE_MAX_DIM": 64, "IMAGE_MIN_DIM": 64, "PREPROCESS": "shades_of_grey",
             "CLASS_AGNOSTIC_MASKS": True, "CLASS_AGNOSTIC_BOXES": True, "COMPUTE_DTYPE": "bfloat16"}
    run = lesions.make_config(lesions.parse_args(["--mode", "predict"]), "inference", saved=saved)
    assert run.PREPROCESS == "shades_of_grey" and run.CLASS_AGNOSTIC_MASKS and run.COMPUTE_DTYPE == "auto"
    with pytest.raises((ConfigError, lesions.UserError), match="PREPROCESS"):
        lesions.make_config(lesions.parse_args(["--mode", "train", "--config", "PREPROCESS=grey"]), "train")


def test_learning_rate_column_is_left_out_of_a_losses_csv_begun_without_it(tmp_path):
    """Resuming a run whose losses.csv predates the column must not shift its rows."""
    from mrcnn.model import _csv_header_has
    path = tmp_path / "losses.csv"
    assert _csv_header_has(str(path), "learning_rate")  # new file
    path.write_text("epoch,loss,mrcnn_mask_loss\n0,1.5,0.3\n")
    assert not _csv_header_has(str(path), "learning_rate")
    path.write_text("epoch,learning_rate,loss\n0,0.001,1.5\n")
    assert _csv_header_has(str(path), "learning_rate")


def test_config_fields_from_a_saved_dict_come_back_typed_with_matterport_defaults_for_new_fields():
    import json
    from mrcnn.config import Config
    from skinlesion import LesionConfig
    saved = json.loads(LesionConfig(IMAGE_MAX_DIM=128, IMAGE_MIN_DIM=128).to_json())
    del saved["NORM"]  # a run written before the field existed
    fields = LesionConfig.fields_from_dict(saved, ("RPN_ANCHOR_SCALES", "MEAN_PIXEL", "IMAGE_MAX_DIM", "IMAGE_MIN_DIM", "NORM",
                                                   "NOT_A_FIELD"))
    assert fields["RPN_ANCHOR_SCALES"] == LesionConfig.RPN_ANCHOR_SCALES  # a tuple again, not a list
    assert isinstance(fields["MEAN_PIXEL"], np.ndarray)
    np.testing.assert_allclose(fields["MEAN_PIXEL"], LesionConfig.MEAN_PIXEL)
    assert fields["IMAGE_MAX_DIM"] == 128 and fields["NORM"] == Config.NORM == "batch"
    assert "NOT_A_FIELD" not in fields
    rebuilt = LesionConfig(**fields)
    assert rebuilt.IMAGE_SHAPE.tolist() == [128, 128, 3]


def test_mask_box_scale_is_validated():
    class Bad(ShapesConfig):
        DETECTION_MASK_BOX_SCALE = 0.8
    with pytest.raises(ConfigError, match="DETECTION_MASK_BOX_SCALE"):
        Bad()


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_fused_batch_norm_matches_keras_batch_norm(dtype):
    """Same outputs, gradients and moving statistics as keras' BatchNormalization, in both precisions."""
    import keras
    import tensorflow as tf
    from mrcnn.backbone import FusedBatchNorm
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(3.0, 2.0, (2, 6, 5, 8)).astype(np.float32))
    ours, reference = FusedBatchNorm(momentum=0.9, dtype=dtype), layers.BatchNormalization(momentum=0.9, dtype=dtype)
    for layer in (ours, reference):
        layer.build(x.shape)
        layer.gamma.assign(rng.uniform(0.5, 1.5, 8).astype(np.float32))
        layer.beta.assign(np.linspace(-1, 1, 8).astype(np.float32))
    reference.set_weights(ours.get_weights())
    results = []
    for layer in (ours, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.range(8, dtype=tf.float32))
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append([y, *grads, layer.moving_mean, layer.moving_variance, layer(x, training=False)])
    tol = 1e-4 if dtype == "float32" else 3e-2
    for got, want in zip(*results):
        np.testing.assert_allclose(np.asarray(tf.cast(got, tf.float32)), np.asarray(tf.cast(want, tf.float32)),
                                   rtol=tol, atol=tol)
    assert results[0][0].dtype == (tf.float32 if dtype == "float32" else tf.bfloat16)
    assert [w.name for w in ours.weights] == [w.name for w in reference.weights]
    assert isinstance(ours, keras.layers.BatchNormalization)  # TRAIN_BN and weight loading see a BatchNormalization


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_group_norm_matches_keras_group_normalization(dtype):
    """The hand-written gradient: outputs, input and weight gradients as keras' GroupNormalization's."""
    import tensorflow as tf
    from mrcnn.backbone import _GroupNorm
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(2.0, 3.0, (3, 5, 4, 48)).astype(np.float32))
    x = tf.cast(x, tf.bfloat16) if dtype != "float32" else x
    ours = _GroupNorm(dtype=dtype, name="ours")
    reference = layers.GroupNormalization(groups=24, epsilon=1e-5, dtype=dtype, name="reference")
    ours.build(x.shape)
    reference.build(x.shape)
    ours.gamma.assign(rng.uniform(0.5, 1.5, 48).astype(np.float32))
    ours.beta.assign(rng.uniform(-1, 1, 48).astype(np.float32))
    reference.set_weights(ours.get_weights())
    weights = tf.constant(rng.normal(size=x.shape).astype(np.float32))
    results = []
    for layer in (ours, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
        results.append([y, *tape.gradient(loss, [x, layer.gamma, layer.beta])])
    assert ours.groups == 24 and results[0][0].dtype == results[1][0].dtype
    tol = 1e-4 if dtype == "float32" else 2e-2
    for got, want in zip(*results):
        got, want = np.asarray(tf.cast(got, tf.float32)), np.asarray(tf.cast(want, tf.float32))
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
