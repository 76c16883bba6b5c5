"""The Mask R-CNN graph: stage modules wired into a functional Keras model, and its small glue layers.

``build_graph(mode, config)`` is what ``MaskRCNN.build`` runs (under the
config's compute-dtype policy); the layer names are Matterport's, so
``mask_rcnn_coco.h5`` loads by name.
"""
import keras
import numpy as np
import tensorflow as tf

from . import anchors as anchors_lib
from .backbone import build_backbone
from .detection import DetectionBoxes, DetectionLayer, FallbackDetection, PadDetections, uses_fallback
from .heads import build_fpn_mask_graph, fpn_classifier_graph
from .precision import Float32Layer, compute_dtype_scope
from .proposals import ProposalLayer
from .rpn import build_rpn_model
from .targets import DetectionTargetLayer


class ConstantAnchors(Float32Layer):
    """Broadcast the fixed pyramid anchors of the training image size to the batch.

    Input: any [B, ...] tensor (for the batch size). Output: [B, A, 4] normalized.
    """

    def __init__(self, anchors, **kwargs):
        super().__init__(**kwargs)
        self.anchors = np.asarray(anchors, np.float32)

    def call(self, x):
        anchors = tf.constant(self.anchors)
        return tf.broadcast_to(anchors[None], [tf.shape(x)[0], self.anchors.shape[0], 4])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.anchors.shape[0], 4)


class NormBoxes(Float32Layer):
    """Pixel boxes [B, N, 4] -> normalized boxes for a fixed image shape."""

    def __init__(self, image_shape, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(v) for v in image_shape[:2])

    def call(self, boxes):
        h, w = self.image_shape
        scale = tf.constant([h - 1, w - 1, h - 1, w - 1], tf.float32)
        shift = tf.constant([0., 0., 1., 1.])
        return (tf.cast(boxes, tf.float32) - shift) / scale

    def compute_output_shape(self, input_shape):
        return input_shape


class SliceROIs(Float32Layer):
    """rois [B, N, 4] -> the first `count` rois [B, count, 4]."""

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        self.count = int(count)

    def call(self, rois):
        return rois[:, :self.count]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.count) + tuple(input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config.update(count=self.count)
        return config


class PositiveROIs(Float32Layer):
    """The leading positive ROIs of a sampled batch, for the mask head.

    Inputs: rois [B, N, 4] (positives first, as DetectionTargetLayer orders
    them), target_class_ids [B, N]. Returns rois [B, K, 4] with K the largest
    number of positives among the batch's images, at least 1 and at most
    ``limit`` (the positive budget): a step whose proposals barely touch the
    objects (early training) runs the mask head on a few boxes, not on the
    whole budget of mostly empty slots. Slots past an image's own positives
    are negatives or padding, which the mask loss ignores.
    """

    def __init__(self, limit, **kwargs):
        super().__init__(**kwargs)
        self.limit = int(limit)

    def call(self, inputs):
        rois, target_class_ids = inputs
        positive = tf.cast(target_class_ids[:, :self.limit] > 0, tf.int32)
        count = tf.maximum(tf.reduce_max(tf.reduce_sum(positive, axis=1)), 1)
        return rois[:, :count]

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], None, 4)

    def get_config(self):
        config = super().get_config()
        config.update(limit=self.limit)
        return config


class ConcatLevels(Float32Layer):
    """Concatenate per-level RPN outputs along the anchor axis: list of [B, Ai, k] -> [B, A, k]."""

    def call(self, inputs):
        return tf.concat(inputs, axis=1)

    def compute_output_shape(self, input_shape):
        total = 0
        for shape in input_shape:
            if shape[1] is None:
                total = None
                break
            total += shape[1]
        return (input_shape[0][0], total, input_shape[0][2])


def build_graph(mode, config, min_confidence=None):
    """The functional Keras model of ``mode`` ("training" or "inference") for ``config``.

    Training inputs: input_image [B, H, W, 3], input_gt_class_ids [B, G],
    input_gt_boxes [B, G, 4] (pixels), input_gt_masks [B, h, w, G]; outputs
    the RPN and head outputs with their targets (mrcnn.training computes the
    losses). Inference inputs: input_image [B, H, W, 3], input_image_meta
    [B, META], input_anchors [B, A, 4] (normalized); outputs detections
    [B, N, 6], detection_probs [B, N, C], mrcnn_mask [B, N, 28, 28, C'],
    mask_boxes [B, N, 4] (normalized: the boxes the mask head saw, into which
    its masks are pasted), the intermediate RPN / head outputs and, with
    Config.DETECTION_FALLBACK, fallback_detections [B, 1, 6], fallback_probs
    [B, 1, C], fallback_mask [B, 1, 28, 28, C'], fallback_mask_boxes [B, 1, 4]
    (the detection to return when nothing passes the threshold).
    min_confidence: a score floor built into the graph (default 0: every
    scored detection is kept and mrcnn.transform applies the threshold).
    """
    with compute_dtype_scope(config.COMPUTE_DTYPE):
        return _build(mode, config, min_confidence)


def _build(mode, config, min_confidence):
    if config.IMAGE_RESIZE_MODE in ("square", "crop") or mode == "training":
        image_shape = tuple(int(v) for v in config.IMAGE_SHAPE)
    else:
        image_shape = (None, None, config.IMAGE_CHANNEL_COUNT)
    h, w = config.IMAGE_SHAPE[:2]
    if mode == "training" and (h / 2 ** 6 != int(h / 2 ** 6) or w / 2 ** 6 != int(w / 2 ** 6)):
        raise ValueError("Config.IMAGE_MAX_DIM: image size must be divisible by 64")

    input_image = keras.Input(shape=image_shape, name="input_image")
    input_image_meta = keras.Input(shape=(config.IMAGE_META_SIZE,), name="input_image_meta")
    rpn_feature_maps, mrcnn_feature_maps = build_backbone(input_image, config)

    anchors_per_location = len(config.RPN_ANCHOR_RATIOS)
    rpn = build_rpn_model(config.RPN_ANCHOR_STRIDE, anchors_per_location, config.TOP_DOWN_PYRAMID_SIZE,
                          config.RPN_CONV_CHANNELS)
    level_outputs = [rpn(p) for p in rpn_feature_maps]
    rpn_class_logits = ConcatLevels(name="rpn_class_logits")([o[0] for o in level_outputs])
    rpn_class = ConcatLevels(name="rpn_class")([o[1] for o in level_outputs])
    rpn_bbox = ConcatLevels(name="rpn_bbox")([o[2] for o in level_outputs])

    if mode == "training":
        anchors = ConstantAnchors(anchors_lib.get_anchors(config, config.IMAGE_SHAPE),
                                  name="anchors")(input_image)
        proposal_count = config.POST_NMS_ROIS_TRAINING
    else:
        input_anchors = keras.Input(shape=(None, 4), name="input_anchors")
        anchors = input_anchors
        proposal_count = config.POST_NMS_ROIS_INFERENCE
    rpn_rois = ProposalLayer(proposal_count, config.RPN_NMS_THRESHOLD, config.PRE_NMS_LIMIT,
                             config.RPN_BBOX_STD_DEV, name="ROI")([rpn_class, rpn_bbox, anchors])

    if mode == "training":
        input_rpn_match = keras.Input(shape=(None, 1), name="input_rpn_match", dtype="int32")
        input_rpn_bbox = keras.Input(shape=(None, 4), name="input_rpn_bbox")
        input_gt_class_ids = keras.Input(shape=(None,), name="input_gt_class_ids", dtype="int32")
        input_gt_boxes = keras.Input(shape=(None, 4), name="input_gt_boxes")
        mask_shape = tuple(config.MINI_MASK_SHAPE) if config.USE_MINI_MASK else tuple(config.IMAGE_SHAPE[:2])
        input_gt_masks = keras.Input(shape=mask_shape + (None,), name="input_gt_masks")
        gt_boxes = NormBoxes(config.IMAGE_SHAPE, name="norm_gt_boxes")(input_gt_boxes)
        if not config.USE_RPN_ROIS:
            raise NotImplementedError("USE_RPN_ROIS=False (externally supplied ROIs) is not supported")
        rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
            config, name="proposal_targets")([rpn_rois, input_gt_class_ids, gt_boxes, input_gt_masks])
        num_rois = config.TRAIN_ROIS_PER_IMAGE
        mrcnn_class_logits, mrcnn_class, mrcnn_bbox = fpn_classifier_graph(
            rois, mrcnn_feature_maps, num_rois, config)
        # Positive ROIs come first in the sampled batch and there are at most
        # `positives` of them: only those reach the mask loss, so only they go
        # through the mask head (torchvision does the same; Matterport ran all).
        # With group norm (per ROI) only as many slots as the batch's largest
        # positive count; batch norm keeps the whole budget, so its statistics
        # are never taken over one or two crops.
        positives = max(1, int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO))
        if config.NORM == "group":
            positive_rois = PositiveROIs(positives, name="positive_rois")([rois, target_class_ids])
            mrcnn_mask = build_fpn_mask_graph(positive_rois, mrcnn_feature_maps, None, config)
        else:
            positive_rois = SliceROIs(positives, name="positive_rois")(rois)
            mrcnn_mask = build_fpn_mask_graph(positive_rois, mrcnn_feature_maps, positives, config)
        inputs = {"input_image": input_image, "input_image_meta": input_image_meta,
                  "input_rpn_match": input_rpn_match, "input_rpn_bbox": input_rpn_bbox,
                  "input_gt_class_ids": input_gt_class_ids, "input_gt_boxes": input_gt_boxes,
                  "input_gt_masks": input_gt_masks}
        outputs = {"rpn_class_logits": rpn_class_logits, "rpn_class": rpn_class, "rpn_bbox": rpn_bbox,
                   "mrcnn_class_logits": mrcnn_class_logits, "mrcnn_class": mrcnn_class,
                   "mrcnn_bbox": mrcnn_bbox, "mrcnn_mask": mrcnn_mask, "rpn_rois": rpn_rois,
                   "output_rois": rois, "target_class_ids": target_class_ids,
                   "target_bbox": target_bbox, "target_mask": target_mask}
        # rpn_match, rpn_bbox and image_meta feed only the losses (computed in
        # the trainer's train_step from the batch), so they are not graph inputs.
        for key in ("input_image_meta", "input_rpn_match", "input_rpn_bbox"):
            inputs.pop(key)
        return keras.Model(inputs, outputs, name="mask_rcnn")

    num_rois = config.POST_NMS_ROIS_INFERENCE
    mrcnn_class_logits, mrcnn_class, mrcnn_bbox = fpn_classifier_graph(
        rpn_rois, mrcnn_feature_maps, num_rois, config)
    # The threshold is applied after the graph (mrcnn.transform): by default it keeps every scored detection.
    detections, detection_probs = DetectionLayer(
        config, min_confidence=0.0 if min_confidence is None else min_confidence, name="mrcnn_detection")(
        [rpn_rois, mrcnn_class, mrcnn_bbox, input_image_meta])
    fallback = uses_fallback(config)
    box_inputs = detections
    if fallback:
        fallback_detections, fallback_probs = FallbackDetection(config, name="mrcnn_fallback")(
            [rpn_rois, mrcnn_class, mrcnn_bbox, input_image_meta])
        box_inputs = [detections, fallback_detections]
    # The boxes the mask head sees (grown by DETECTION_MASK_BOX_SCALE; the fallback's first):
    # an output, so the masks are pasted back into exactly these.
    detection_boxes = DetectionBoxes(config.DETECTION_MASK_BOX_SCALE, name="detection_boxes")(box_inputs)
    masks = build_fpn_mask_graph(detection_boxes, mrcnn_feature_maps, None, config)
    skip = 1 if fallback else 0
    mrcnn_mask = PadDetections(config.DETECTION_MAX_INSTANCES, skip, name="mrcnn_mask_padded")(masks)
    mask_boxes = PadDetections(config.DETECTION_MAX_INSTANCES, skip, name="mask_boxes")(detection_boxes)
    inputs = {"input_image": input_image, "input_image_meta": input_image_meta,
              "input_anchors": input_anchors}
    outputs = {"detections": detections, "mrcnn_class": mrcnn_class, "mrcnn_bbox": mrcnn_bbox,
               "mrcnn_mask": mrcnn_mask, "rpn_rois": rpn_rois, "rpn_class": rpn_class,
               "rpn_bbox": rpn_bbox, "detection_probs": detection_probs, "mask_boxes": mask_boxes}
    if fallback:
        outputs.update(fallback_detections=fallback_detections, fallback_probs=fallback_probs,
                       fallback_mask=SliceROIs(1, name="fallback_mask")(masks),
                       fallback_mask_boxes=SliceROIs(1, name="fallback_mask_boxes")(detection_boxes))
    return keras.Model(inputs, outputs, name="mask_rcnn")
