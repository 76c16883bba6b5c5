"""TensorFlow box ops used inside the graph layers (the numpy twins live in boxes.py).

All boxes are (y1, x1, y2, x2); inside the graph they are normalized to [0, 1].
"""
import tensorflow as tf


def apply_box_deltas_graph(boxes, deltas):
    """Apply (dy, dx, log(dh), log(dw)) deltas.

    boxes: [..., 4]; deltas: [..., 4] (same leading shape). Returns: [..., 4].
    """
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + 0.5 * height + deltas[..., 0] * height
    center_x = boxes[..., 1] + 0.5 * width + deltas[..., 1] * width
    # Clamp log-scale deltas so a wild early prediction cannot overflow exp().
    height = height * tf.exp(tf.minimum(deltas[..., 2], 4.0))
    width = width * tf.exp(tf.minimum(deltas[..., 3], 4.0))
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return tf.stack([y1, x1, y1 + height, x1 + width], axis=-1)


def scale_boxes_graph(boxes, factor):
    """Boxes grown (factor > 1) about their centres, clipped to the unit square.

    boxes: [..., 4] normalized; factor: python float. Returns: [..., 4].
    Numpy twin: boxes.scale_boxes.
    """
    center_y = (boxes[..., 0] + boxes[..., 2]) * 0.5
    center_x = (boxes[..., 1] + boxes[..., 3]) * 0.5
    half_h = (boxes[..., 2] - boxes[..., 0]) * (0.5 * factor)
    half_w = (boxes[..., 3] - boxes[..., 1]) * (0.5 * factor)
    scaled = tf.stack([center_y - half_h, center_x - half_w, center_y + half_h, center_x + half_w], axis=-1)
    return tf.clip_by_value(scaled, 0.0, 1.0)


def clip_boxes_graph(boxes, window):
    """Clip boxes to a window.

    boxes: [..., 4]; window: [4] or broadcastable [..., 4] (y1, x1, y2, x2).
    Returns: [..., 4].
    """
    window = tf.cast(window, boxes.dtype)
    if window.shape.rank == 2:
        window = window[:, None, :]  # per-image windows [B, 4] against boxes [B, N, 4]
    wy1, wx1, wy2, wx2 = window[..., 0], window[..., 1], window[..., 2], window[..., 3]
    y1 = tf.minimum(tf.maximum(boxes[..., 0], wy1), wy2)
    x1 = tf.minimum(tf.maximum(boxes[..., 1], wx1), wx2)
    y2 = tf.minimum(tf.maximum(boxes[..., 2], wy1), wy2)
    x2 = tf.minimum(tf.maximum(boxes[..., 3], wx1), wx2)
    return tf.stack([y1, x1, y2, x2], axis=-1)


def overlaps_graph(boxes1, boxes2):
    """IoU matrix.

    boxes1: [N, 4]; boxes2: [M, 4]. Returns: [N, M].
    """
    b1 = boxes1[:, None, :]
    b2 = boxes2[None, :, :]
    y1 = tf.maximum(b1[..., 0], b2[..., 0])
    x1 = tf.maximum(b1[..., 1], b2[..., 1])
    y2 = tf.minimum(b1[..., 2], b2[..., 2])
    x2 = tf.minimum(b1[..., 3], b2[..., 3])
    intersection = tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0)
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    union = area1 + area2 - intersection
    return intersection / tf.maximum(union, 1e-9)


def box_refinement_graph(box, gt_box):
    """Deltas that turn box into gt_box.

    box, gt_box: [N, 4]. Returns: [N, (dy, dx, log(dh), log(dw))].
    """
    box = tf.cast(box, tf.float32)
    gt_box = tf.cast(gt_box, tf.float32)
    height = box[:, 2] - box[:, 0]
    width = box[:, 3] - box[:, 1]
    center_y = box[:, 0] + 0.5 * height
    center_x = box[:, 1] + 0.5 * width
    gt_height = gt_box[:, 2] - gt_box[:, 0]
    gt_width = gt_box[:, 3] - gt_box[:, 1]
    gt_center_y = gt_box[:, 0] + 0.5 * gt_height
    gt_center_x = gt_box[:, 1] + 0.5 * gt_width
    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = tf.math.log(gt_height / height)
    dw = tf.math.log(gt_width / width)
    return tf.stack([dy, dx, dh, dw], axis=1)


def trim_zeros_graph(boxes, name="trim_zeros"):
    """Drop all-zero padding rows.

    boxes: [N, 4]. Returns: boxes [M, 4] and the bool keep mask [N].
    """
    non_zeros = tf.cast(tf.reduce_sum(tf.abs(boxes), axis=1), tf.bool)
    return tf.boolean_mask(boxes, non_zeros, name=name), non_zeros


def norm_boxes_graph(boxes, shape):
    """Pixel boxes -> normalized. boxes: [..., 4]; shape: (height, width). Returns: [..., 4]."""
    h, w = tf.split(tf.cast(shape, tf.float32), 2)
    scale = tf.concat([h, w, h, w], axis=-1) - tf.constant(1.0)
    shift = tf.constant([0., 0., 1., 1.])
    return tf.divide(boxes - shift, scale)


def denorm_boxes_graph(boxes, shape):
    """Normalized boxes -> integer pixels. boxes: [..., 4]; shape: (height, width). Returns: int32."""
    h, w = tf.split(tf.cast(shape, tf.float32), 2)
    scale = tf.concat([h, w, h, w], axis=-1) - tf.constant(1.0)
    shift = tf.constant([0., 0., 1., 1.])
    return tf.cast(tf.round(tf.multiply(boxes, scale) + shift), tf.int32)
