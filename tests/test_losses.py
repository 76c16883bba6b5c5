"""Each loss in mrcnn.losses against a hand / numpy computation."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn import losses as L  # noqa: E402


def softmax_ce(logits, label):
    """Cross-entropy of one logits row against an integer label."""
    logits = np.asarray(logits, np.float64)
    log_z = np.log(np.sum(np.exp(logits - logits.max()))) + logits.max()
    return log_z - logits[label]


def smooth_l1(y_true, y_pred):
    diff = np.abs(np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64))
    return np.where(diff < 1, 0.5 * diff ** 2, diff - 0.5)


def scalar(x):
    value = float(np.asarray(x))
    assert np.isfinite(value), f"loss is not finite: {value}"
    return value


def test_smooth_l1_hand_values():
    got = L.smooth_l1(tf.constant([0.0, 0.0, 0.0, 2.0]), tf.constant([0.5, -1.0, 3.0, 2.0])).numpy()
    np.testing.assert_allclose(got, [0.125, 0.5, 2.5, 0.0])


# ------------------------------------------------------------------- RPN

def test_rpn_class_loss_ignores_neutral_anchors():
    rng = np.random.default_rng(0)
    match = np.array([[1, -1, 0, 0, -1, 1], [0, -1, -1, 0, 0, 1]], np.int32)
    logits = rng.normal(size=(2, 6, 2)).astype(np.float32)
    expected = np.mean([softmax_ce(logits[b, a], int(match[b, a] == 1))
                        for b in range(2) for a in range(6) if match[b, a] != 0])
    got = scalar(L.rpn_class_loss(tf.constant(match[..., None]), tf.constant(logits)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    changed = logits.copy()
    changed[match == 0] = [50.0, -50.0]  # wildly wrong, but neutral
    np.testing.assert_allclose(scalar(L.rpn_class_loss(tf.constant(match[..., None]), tf.constant(changed))),
                               expected, rtol=1e-5, err_msg="neutral anchors must not count")


def test_rpn_class_loss_all_neutral_is_zero():
    got = scalar(L.rpn_class_loss(tf.zeros([2, 5, 1], tf.int32), tf.random.normal([2, 5, 2])))
    assert got == 0.0


def test_rpn_bbox_loss_with_different_positive_counts_per_image():
    rng = np.random.default_rng(1)
    anchors, slots = 8, 5
    match = np.zeros((2, anchors), np.int32)
    match[0, [1, 4, 6]] = 1      # 3 positives
    match[0, [0, 2]] = -1
    match[1, [5]] = 1            # 1 positive
    match[1, [3, 7]] = -1
    pred = rng.normal(size=(2, anchors, 4)).astype(np.float32)
    target = np.zeros((2, slots, 4), np.float32)
    target[0, :3] = rng.normal(size=(3, 4))     # packed in anchor order: anchors 1, 4, 6
    target[1, :1] = rng.normal(size=(1, 4))     # anchor 5
    pairs = [(target[0, 0], pred[0, 1]), (target[0, 1], pred[0, 4]), (target[0, 2], pred[0, 6]),
             (target[1, 0], pred[1, 5])]
    expected = np.mean([smooth_l1(t, p) for t, p in pairs])
    got = scalar(L.rpn_bbox_loss(tf.constant(target), tf.constant(match[..., None]), tf.constant(pred)))
    np.testing.assert_allclose(got, expected, rtol=1e-5,
                               err_msg="targets must line up with each image's own positives")
    # Padding slots and non-positive predictions do not count.
    target[:, 3:] = 9.0
    target[1, 1:] = 9.0
    pred[match != 1] = 9.0
    np.testing.assert_allclose(
        scalar(L.rpn_bbox_loss(tf.constant(target), tf.constant(match[..., None]), tf.constant(pred))),
        expected, rtol=1e-5)


def test_rpn_bbox_loss_no_positive_is_zero():
    match = -np.ones((2, 6, 1), np.int32)
    got = scalar(L.rpn_bbox_loss(tf.random.normal([2, 4, 4]), tf.constant(match), tf.random.normal([2, 6, 4])))
    assert got == 0.0


# ----------------------------------------------------------------- heads

def test_mrcnn_class_loss_ignores_padding_and_inactive_predictions():
    rng = np.random.default_rng(2)
    B_, T, C = 2, 5, 4
    logits = rng.normal(size=(B_, T, C)).astype(np.float32)
    # Force predicted classes so the active-class rule is exercised.
    predicted = np.array([[0, 1, 3, 2, 1], [3, 3, 1, 0, 2]])
    logits[np.arange(B_)[:, None], np.arange(T)[None], predicted] += 10.0
    targets = np.array([[1, 0, 2, 2, 0], [1, 2, 0, 0, 0]], np.int32)
    valid = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]], bool)   # last ROI of each image is padding
    active = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.int32)     # image 1's source lacks class 3
    terms = []
    for b in range(B_):
        for t in range(T):
            if valid[b, t] and active[b, predicted[b, t]]:
                terms.append(softmax_ce(logits[b, t], targets[b, t]))
    assert len(terms) == 6  # image 0: 4 valid; image 1: 4 valid minus two predicted as inactive class 3
    got = scalar(L.mrcnn_class_loss(tf.constant(targets), tf.constant(logits), tf.constant(active),
                                    tf.constant(valid)))
    np.testing.assert_allclose(got, np.mean(terms), rtol=1e-5)


def test_mrcnn_class_loss_no_valid_roi_is_zero():
    got = scalar(L.mrcnn_class_loss(tf.zeros([2, 3], tf.int32), tf.random.normal([2, 3, 4]),
                                    tf.ones([2, 4], tf.int32), tf.zeros([2, 3], tf.bool)))
    assert got == 0.0


def test_mrcnn_bbox_loss_positive_rois_true_class_only():
    rng = np.random.default_rng(3)
    B_, T, C = 2, 4, 3
    targets = np.array([[2, 1, 0, 0], [0, 0, 0, 0]], np.int32)
    target_bbox = rng.normal(size=(B_, T, 4)).astype(np.float32)
    pred = rng.normal(size=(B_, T, C, 4)).astype(np.float32)
    expected = np.mean([smooth_l1(target_bbox[0, 0], pred[0, 0, 2]), smooth_l1(target_bbox[0, 1], pred[0, 1, 1])])
    got = scalar(L.mrcnn_bbox_loss(tf.constant(target_bbox), tf.constant(targets), tf.constant(pred)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Other class channels and negative ROIs are ignored.
    pred[0, 0, [0, 1]] = 100.0
    pred[0, 1, [0, 2]] = 100.0
    pred[1] = 100.0
    pred[0, 2:] = 100.0
    np.testing.assert_allclose(
        scalar(L.mrcnn_bbox_loss(tf.constant(target_bbox), tf.constant(targets), tf.constant(pred))),
        expected, rtol=1e-5)


def test_mrcnn_bbox_loss_no_positive_is_zero():
    got = scalar(L.mrcnn_bbox_loss(tf.random.normal([2, 3, 4]), tf.zeros([2, 3], tf.int32),
                                   tf.random.normal([2, 3, 4, 4])))
    assert got == 0.0


def bce(y, p):
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_mrcnn_mask_loss_positive_rois_true_class_only():
    rng = np.random.default_rng(4)
    B_, T, P, h, w, C = 2, 6, 3, 4, 4, 3
    targets = np.array([[1, 2, 0, 0, 0, 0], [2, 0, 0, 0, 0, 0]], np.int32)
    target_masks = (rng.uniform(size=(B_, T, h, w)) > 0.5).astype(np.float32)
    pred = rng.uniform(0.05, 0.95, size=(B_, P, h, w, C)).astype(np.float32)
    expected = np.mean(np.concatenate([bce(target_masks[0, 0], pred[0, 0, :, :, 1]).ravel(),
                                       bce(target_masks[0, 1], pred[0, 1, :, :, 2]).ravel(),
                                       bce(target_masks[1, 0], pred[1, 0, :, :, 2]).ravel()]))
    got = scalar(L.mrcnn_mask_loss(tf.constant(target_masks), tf.constant(targets), tf.constant(pred)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    pred[0, 0, :, :, [0, 2]] = 1e-3    # other channels of a positive
    pred[0, 2] = 1e-3                  # a negative ROI
    pred[1, 1:] = 1e-3
    np.testing.assert_allclose(
        scalar(L.mrcnn_mask_loss(tf.constant(target_masks), tf.constant(targets), tf.constant(pred))),
        expected, rtol=1e-5)


def test_mrcnn_mask_loss_no_positive_is_zero_and_saturated_is_finite():
    got = scalar(L.mrcnn_mask_loss(tf.ones([2, 4, 3, 3]), tf.zeros([2, 4], tf.int32), tf.random.uniform([2, 2, 3, 3, 2])))
    assert got == 0.0
    # A confidently wrong prediction (exact 0 / 1) stays finite thanks to clipping.
    targets = tf.constant([[1]], tf.int32)
    got = scalar(L.mrcnn_mask_loss(tf.ones([1, 1, 2, 2]), targets, tf.zeros([1, 1, 2, 2, 2])))
    assert 10 < got < 20


# ----------------------------------------------------------- weight decay

def test_weight_decay_loss_skips_batchnorm_gamma_and_beta():
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, name="dense_a")(inputs)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    outputs = keras.layers.Dense(2, name="dense_b")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(5)
    for w in model.weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32))
    decay = 0.01
    expected = 0.0
    for w in model.trainable_weights:
        if w.path.startswith("bn_a/"):
            continue
        value = np.asarray(w)
        expected += decay * np.sum(value ** 2) / value.size
    assert {w.path for w in model.trainable_weights} >= {"bn_a/gamma", "bn_a/beta"}
    got = scalar(L.weight_decay_loss(model.trainable_weights, decay))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert scalar(L.weight_decay_loss([], decay)) == 0.0
