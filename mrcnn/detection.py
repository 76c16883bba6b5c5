"""DetectionLayer: refine ROIs by class, drop background and low scores, per-class NMS."""
import numpy as np
import tensorflow as tf

from .box_graph import apply_box_deltas_graph, clip_boxes_graph, scale_boxes_graph
from .images import image_meta_field
from .precision import Float32Layer


def window_norm_graph(image_meta):
    """The real image's area inside each molded image, normalized: image_meta [B, META] -> [B, 4]."""
    image_shape = image_meta_field(image_meta, "image_shape")
    window = image_meta_field(image_meta, "window")
    h = image_shape[:, 0:1] - 1.0
    w = image_shape[:, 1:2] - 1.0
    return (window - tf.constant([0., 0., 1., 1.])) / tf.concat([h, w, h, w], axis=1)


def uses_fallback(config):
    """Whether the graph computes a fallback detection (Config.DETECTION_FALLBACK, an object class to give it)."""
    return bool(config.DETECTION_FALLBACK and config.NUM_CLASSES > 1)


def refine_detections_graph(rois, probs, deltas, window, config, min_confidence=None):
    """Final detections of one image.

    rois: [N, 4] normalized; probs: [N, C]; deltas: [N, C, 4]; window: [4]
    normalized area of the real image. min_confidence: score threshold
    (default config.DETECTION_MIN_CONFIDENCE).
    Returns: detections [D, (y1, x1, y2, x2, class_id, score)] and their full
    class probabilities [D, C]; D = DETECTION_MAX_INSTANCES, zero-padded.
    config.DETECTION_SCORE picks the rule: "class" (Matterport: argmax over
    all classes must not be background, score = that class's probability) or
    "foreground" (score = 1 - P(background), class = best object class).
    With config.DETECTION_FALLBACK, an image where nothing passes (every ROI
    scored background, or below min_confidence) gets one detection anyway:
    see best_roi_detection_graph.
    """
    max_out = config.DETECTION_MAX_INSTANCES
    if min_confidence is None:
        min_confidence = config.DETECTION_MIN_CONFIDENCE
    foreground = config.DETECTION_SCORE == "foreground" and config.NUM_CLASSES > 1
    if foreground:
        # The ROI is an object when 1 - P(background) wins; its class is the best object class.
        class_ids = 1 + tf.argmax(probs[:, 1:], axis=1, output_type=tf.int32)
        class_scores = 1.0 - probs[:, 0]
    else:
        class_ids = tf.argmax(probs, axis=1, output_type=tf.int32)
        class_scores = tf.gather(probs, class_ids, batch_dims=1)
    class_deltas = tf.gather(deltas, class_ids, batch_dims=1)
    std = tf.constant(np.reshape(config.BBOX_STD_DEV, [1, 4]), dtype=tf.float32)
    refined = clip_boxes_graph(apply_box_deltas_graph(rois, class_deltas * std), window)

    roi_area = (rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1])
    box_area = (refined[:, 2] - refined[:, 0]) * (refined[:, 3] - refined[:, 1])
    valid = (class_ids > 0) & (roi_area > 0) & (box_area > 0)
    scores = tf.where(valid, class_scores, -1.0)
    # Per-class NMS in one call: shift each class's boxes to a disjoint region
    # ("foreground": one NMS over all classes, an object has one class).
    offsets = 0.0 if foreground else tf.cast(class_ids, tf.float32)[:, None] * 2.0
    keep = tf.image.non_max_suppression(refined + offsets, scores, max_out,
                                        iou_threshold=config.DETECTION_NMS_THRESHOLD,
                                        score_threshold=max(float(min_confidence), 0.0))
    detections = tf.concat([tf.gather(refined, keep),
                            tf.cast(tf.gather(class_ids, keep), tf.float32)[:, None],
                            tf.gather(class_scores, keep)[:, None]], axis=1)
    kept_probs = tf.gather(probs, keep)
    if uses_fallback(config):
        detections, kept_probs = tf.cond(
            tf.size(keep) > 0, lambda: (detections, kept_probs),
            lambda: best_roi_detection_graph(rois, probs, deltas, window, std))
    pad = max_out - tf.shape(detections)[0]
    return tf.pad(detections, [(0, pad), (0, 0)]), tf.pad(kept_probs, [(0, pad), (0, 0)])


def best_roi_detection_graph(rois, probs, deltas, window, std):
    """The most object-like ROI as one detection, for an image where nothing was detected.

    rois: [N, 4] normalized, in the proposal layer's order (best RPN score
    first); probs: [N, C]; deltas: [N, C, 4]; window: [4]; std: [1, 4]
    BBOX_STD_DEV. Picks the ROI with the highest foreground probability
    (1 - background); when all are equal (e.g. all 0) argmax keeps the first,
    the best RPN proposal. Its class is the best foreground class, its score
    that class's probability (below the background's, so it reads as unsure),
    its box refined by that class's deltas (the ROI itself if refinement
    leaves no area). Returns: detections [1, 6], probs [1, C].
    """
    roi_area = (rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1])
    foreground = tf.where(roi_area > 0, 1.0 - probs[:, 0], -1.0)
    best = tf.argmax(foreground, output_type=tf.int32)
    class_id = 1 + tf.argmax(probs[best, 1:], output_type=tf.int32)
    roi = rois[best][None]
    box = clip_boxes_graph(apply_box_deltas_graph(roi, deltas[best, class_id][None] * std), window)
    area = (box[0, 2] - box[0, 0]) * (box[0, 3] - box[0, 1])
    box = tf.cond(area > 0, lambda: box, lambda: clip_boxes_graph(roi, window))
    detection = tf.concat([box, tf.reshape(tf.cast(class_id, tf.float32), [1, 1]),
                           tf.reshape(probs[best, class_id], [1, 1])], axis=1)
    return detection, probs[best][None]


class DetectionLayer(Float32Layer):
    """Batch wrapper of refine_detections_graph.

    Inputs: rois [B, N, 4], mrcnn_class [B, N, C], mrcnn_bbox [B, N, C, 4],
    image_meta [B, META].
    Outputs: detections [B, D, 6] (boxes normalized), detection_probs [B, D, C].
    """

    def __init__(self, config, min_confidence=None, **kwargs):
        """min_confidence: score threshold (default config.DETECTION_MIN_CONFIDENCE), fixed at build."""
        super().__init__(**kwargs)
        self.config = config
        self.min_confidence = float(config.DETECTION_MIN_CONFIDENCE if min_confidence is None else min_confidence)

    def call(self, inputs):
        rois, probs, deltas, image_meta = inputs
        window_norm = window_norm_graph(image_meta)
        max_out = self.config.DETECTION_MAX_INSTANCES
        num_classes = self.config.NUM_CLASSES
        detections, det_probs = tf.map_fn(
            lambda args: refine_detections_graph(*args, self.config, self.min_confidence),
            (rois, probs, deltas, window_norm),
            fn_output_signature=(tf.TensorSpec([max_out, 6], tf.float32),
                                 tf.TensorSpec([max_out, num_classes], tf.float32)))
        return [tf.ensure_shape(detections, [None, max_out, 6]),
                tf.ensure_shape(det_probs, [None, max_out, num_classes])]

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        return [(batch, self.config.DETECTION_MAX_INSTANCES, 6),
                (batch, self.config.DETECTION_MAX_INSTANCES, self.config.NUM_CLASSES)]


class FallbackDetection(Float32Layer):
    """The detection Config.DETECTION_FALLBACK gives an image where nothing passes, for every image.

    Inputs as DetectionLayer. Outputs: fallback_detections [B, 1, 6] (box
    normalized, class id, score) and fallback_probs [B, 1, C], by
    best_roi_detection_graph, the rule DetectionLayer's own fallback uses.
    Computed whatever the threshold, so a threshold applied after the graph
    (mrcnn.transform) can fall back exactly as a graph built with it would.
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config

    def call(self, inputs):
        rois, probs, deltas, image_meta = inputs
        std = tf.constant(np.reshape(self.config.BBOX_STD_DEV, [1, 4]), dtype=tf.float32)
        num_classes = self.config.NUM_CLASSES
        detections, det_probs = tf.map_fn(
            lambda args: best_roi_detection_graph(*args, std), (rois, probs, deltas, window_norm_graph(image_meta)),
            fn_output_signature=(tf.TensorSpec([1, 6], tf.float32), tf.TensorSpec([1, num_classes], tf.float32)))
        return [tf.ensure_shape(detections, [None, 1, 6]), tf.ensure_shape(det_probs, [None, 1, num_classes])]

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        return [(batch, 1, 6), (batch, 1, self.config.NUM_CLASSES)]


class DetectionBoxes(Float32Layer):
    """detections [B, D, 6] -> boxes [B, K, 4] of the real detections only, for the mask head.

    Input detections, or [detections, fallback_detections [B, 1, 6]]: then
    the fallback's box comes first, [B, 1 + K, 4].

    K is the largest count of real (non-padding) detections in the batch, at
    least 1, so the mask head runs on what was found rather than on D padded
    slots (an image with one lesion costs one mask, not DETECTION_MAX_INSTANCES).
    scale (Config.DETECTION_MASK_BOX_SCALE): boxes grown about their centres
    and clipped to the image, so a mask can reach past a box that cut its
    object; 1.0 (Matterport) leaves them as detected.
    """

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        detections = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        real = tf.reduce_sum(tf.cast(detections[..., 4] > 0, tf.int32), axis=1)
        count = tf.maximum(tf.reduce_max(real), 1)
        boxes = detections[:, :count, :4]
        if isinstance(inputs, (list, tuple)):
            boxes = tf.concat([inputs[1][..., :4], boxes], axis=1)
        return boxes if self.scale == 1.0 else scale_boxes_graph(boxes, self.scale)

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale)
        return config

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0] if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)) else input_shape[0]
        return (batch, None, 4)


class PadDetections(Float32Layer):
    """Per-detection values [B, skip + K, ...] -> [B, D, ...]: the first ``skip`` dropped, zero-padded to D.

    D = DETECTION_MAX_INSTANCES. For the mask head's masks [.., h, w, C] and
    boxes [.., 4]; skip 1 drops the fallback's slot (DetectionBoxes).
    """

    def __init__(self, max_instances, skip=0, **kwargs):
        super().__init__(**kwargs)
        self.max_instances = int(max_instances)
        self.skip = int(skip)

    def call(self, values):
        values = values[:, self.skip:]
        pad = self.max_instances - tf.shape(values)[1]
        padded = tf.pad(values, [(0, 0), (0, pad)] + [(0, 0)] * (values.shape.rank - 2))
        return tf.ensure_shape(padded, [None, self.max_instances] + list(values.shape[2:]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.max_instances) + tuple(input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config.update(max_instances=self.max_instances, skip=self.skip)
        return config
