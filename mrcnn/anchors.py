"""Anchor generation over the feature pyramid (numpy; cached per image shape)."""
import numpy as np

from .boxes import norm_boxes


def generate_anchors(scales, ratios, shape, feature_stride, anchor_stride):
    """Anchors of one pyramid level.

    scales: anchor side(s) in pixels (e.g. 32); ratios: width/height ratios;
    shape: (rows, cols) of the feature map; feature_stride: pixels per feature
    cell; anchor_stride: anchors every N cells.
    Returns: float [rows*cols*len(ratios)*len(scales), (y1, x1, y2, x2)] pixels.
    """
    scales, ratios = np.meshgrid(np.array(scales), np.array(ratios))
    scales = scales.flatten()
    ratios = ratios.flatten()
    heights = scales / np.sqrt(ratios)
    widths = scales * np.sqrt(ratios)
    shifts_y = np.arange(0, shape[0], anchor_stride) * feature_stride
    shifts_x = np.arange(0, shape[1], anchor_stride) * feature_stride
    shifts_x, shifts_y = np.meshgrid(shifts_x, shifts_y)
    box_widths, box_centers_x = np.meshgrid(widths, shifts_x)
    box_heights, box_centers_y = np.meshgrid(heights, shifts_y)
    box_centers = np.stack([box_centers_y, box_centers_x], axis=2).reshape([-1, 2])
    box_sizes = np.stack([box_heights, box_widths], axis=2).reshape([-1, 2])
    return np.concatenate([box_centers - 0.5 * box_sizes, box_centers + 0.5 * box_sizes], axis=1)


def generate_pyramid_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride):
    """Anchors of every pyramid level, concatenated level by level.

    scales: one scale per level; feature_shapes: [(rows, cols)] per level.
    Returns: float [N, (y1, x1, y2, x2)] pixels, sorted by level (P2 first).
    """
    anchors = [generate_anchors(scales[i], ratios, feature_shapes[i], feature_strides[i], anchor_stride)
               for i in range(len(scales))]
    return np.concatenate(anchors, axis=0)


def compute_backbone_shapes(config, image_shape):
    """Feature-map (rows, cols) of each pyramid level for an input shape.

    Returns: int [levels, 2].
    """
    if callable(config.BACKBONE):
        return config.COMPUTE_BACKBONE_SHAPE(image_shape)
    return np.array([[int(np.ceil(image_shape[0] / stride)), int(np.ceil(image_shape[1] / stride))]
                     for stride in config.BACKBONE_STRIDES])


_ANCHOR_CACHE = {}


def get_anchors(config, image_shape, normalized=True):
    """Pyramid anchors for an image shape; normalized coordinates by default.

    Returns: float32 [N, 4]. Cached by (shape, anchor settings).
    """
    key = (tuple(image_shape[:2]), tuple(config.RPN_ANCHOR_SCALES), tuple(config.RPN_ANCHOR_RATIOS),
           config.RPN_ANCHOR_STRIDE, tuple(config.BACKBONE_STRIDES), normalized)
    if key not in _ANCHOR_CACHE:
        shapes = compute_backbone_shapes(config, image_shape)
        anchors = generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, shapes,
                                           config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
        if normalized:
            anchors = norm_boxes(anchors, image_shape[:2])
        _ANCHOR_CACHE[key] = anchors.astype(np.float32)
    return _ANCHOR_CACHE[key]
