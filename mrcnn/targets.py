"""DetectionTargetLayer: sample training ROIs and build their class, box and mask targets."""
import numpy as np
import tensorflow as tf
import keras

from .box_graph import box_refinement_graph, overlaps_graph, trim_zeros_graph
from .precision import Float32Layer


def detection_targets_graph(proposals, gt_class_ids, gt_boxes, gt_masks, config):
    """Targets for one image.

    proposals: [N, 4] normalized, zero-padded. gt_class_ids: [G] int32 (negative
    = crowd, 0 = padding). gt_boxes: [G, 4] normalized, zero-padded. gt_masks:
    [h, w, G] float (mini masks when USE_MINI_MASK, else full image size).
    Returns (each padded to T = TRAIN_ROIS_PER_IMAGE rows):
        rois [T, 4] normalized, class_ids [T] int32, deltas [T, 4] (already
        divided by BBOX_STD_DEV), masks [T, MASK_H, MASK_W] in {0, 1}; the sampled
        positives first, then the negatives, each in proposal order.
    The ground-truth boxes are added to the proposals (as torchvision does), so
    the heads see positive ROIs from the first step even while the RPN is random.
    """
    total = config.TRAIN_ROIS_PER_IMAGE
    proposals, _ = trim_zeros_graph(proposals, name="trim_proposals")
    gt_boxes, non_zeros = trim_zeros_graph(gt_boxes, name="trim_gt_boxes")
    gt_class_ids = tf.boolean_mask(gt_class_ids, non_zeros)
    gt_masks = tf.gather(gt_masks, tf.where(non_zeros)[:, 0], axis=2)

    crowd_ix = tf.where(gt_class_ids < 0)[:, 0]
    non_crowd_ix = tf.where(gt_class_ids > 0)[:, 0]
    crowd_boxes = tf.gather(gt_boxes, crowd_ix)
    gt_class_ids = tf.gather(gt_class_ids, non_crowd_ix)
    gt_boxes = tf.gather(gt_boxes, non_crowd_ix)
    gt_masks = tf.gather(gt_masks, non_crowd_ix, axis=2)

    proposals = tf.concat([proposals, gt_boxes], axis=0)
    overlaps = overlaps_graph(proposals, gt_boxes)  # [N, G]
    crowd_overlaps = overlaps_graph(proposals, crowd_boxes)
    crowd_iou_max = tf.reduce_max(tf.concat([crowd_overlaps, tf.zeros_like(proposals[:, :1])], 1), axis=1)
    no_crowd = crowd_iou_max < 0.001
    roi_iou_max = tf.reduce_max(tf.concat([overlaps, tf.zeros_like(proposals[:, :1])], 1), axis=1)

    positive_indices = tf.where(roi_iou_max >= 0.5)[:, 0]
    negative_indices = tf.where(tf.logical_and(roi_iou_max < 0.5, no_crowd))[:, 0]
    positive_budget = int(total * config.ROI_POSITIVE_RATIO)
    # A random subset of each kind, kept in proposal order: which ROIs train is as random as before,
    # but their order no longer is, so when nothing is left out the targets, the loss sums and the
    # rounding of the (bfloat16) head gradients are the same from run to run.
    positive_indices = tf.sort(tf.random.shuffle(positive_indices)[:positive_budget])
    positive_count = tf.shape(positive_indices)[0]
    # Fill the rest of the ROI budget with negatives (torchvision's sampler);
    # Matterport kept an exact 1:2 ratio and padded, which starves the heads early.
    negative_indices = tf.sort(tf.random.shuffle(negative_indices)[:total - positive_count])
    positive_rois = tf.gather(proposals, positive_indices)
    negative_rois = tf.gather(proposals, negative_indices)

    positive_overlaps = tf.gather(overlaps, positive_indices)
    assignment = tf.cond(tf.shape(positive_overlaps)[1] > 0,
                         lambda: tf.argmax(positive_overlaps, axis=1),
                         lambda: tf.zeros([0], tf.int64))
    roi_gt_boxes = tf.gather(gt_boxes, assignment)
    roi_gt_class_ids = tf.gather(gt_class_ids, assignment)
    deltas = box_refinement_graph(positive_rois, roi_gt_boxes)
    deltas /= tf.constant(np.reshape(config.BBOX_STD_DEV, [1, 4]), dtype=tf.float32)

    instance_masks = tf.expand_dims(tf.transpose(gt_masks, [2, 0, 1]), -1)  # [G, h, w, 1]
    roi_masks = tf.gather(instance_masks, assignment)
    crop_boxes = positive_rois
    if config.USE_MINI_MASK:
        # Mini masks span their gt box: express the ROI in the box's frame.
        y1, x1, y2, x2 = tf.split(positive_rois, 4, axis=1)
        gy1, gx1, gy2, gx2 = tf.split(roi_gt_boxes, 4, axis=1)
        gh = gy2 - gy1
        gw = gx2 - gx1
        crop_boxes = tf.concat([(y1 - gy1) / gh, (x1 - gx1) / gw, (y2 - gy1) / gh, (x2 - gx1) / gw], 1)
    box_ids = tf.range(tf.shape(roi_masks)[0])
    masks = tf.image.crop_and_resize(tf.cast(roi_masks, tf.float32), crop_boxes, box_ids,
                                     tuple(config.MASK_SHAPE))
    masks = tf.round(tf.squeeze(masks, axis=3))

    rois = tf.concat([positive_rois, negative_rois], axis=0)
    negative_count = tf.shape(negative_rois)[0]
    pad = tf.maximum(total - tf.shape(rois)[0], 0)
    rois = tf.pad(rois, [(0, pad), (0, 0)])
    roi_gt_class_ids = tf.pad(tf.cast(roi_gt_class_ids, tf.int32), [(0, negative_count + pad)])
    deltas = tf.pad(deltas, [(0, negative_count + pad), (0, 0)])
    masks = tf.pad(masks, [(0, negative_count + pad), (0, 0), (0, 0)])
    return rois, roi_gt_class_ids, deltas, masks


class DetectionTargetLayer(Float32Layer):
    """Batch wrapper of detection_targets_graph.

    Inputs: proposals [B, N, 4], gt_class_ids [B, G], gt_boxes [B, G, 4]
    normalized, gt_masks [B, h, w, G].
    Outputs: rois [B, T, 4], target_class_ids [B, T], target_deltas [B, T, 4],
    target_mask [B, T, MASK_H, MASK_W].
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config

    def call(self, inputs):
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs
        total = self.config.TRAIN_ROIS_PER_IMAGE
        mask_h, mask_w = self.config.MASK_SHAPE
        signature = (tf.TensorSpec([total, 4], tf.float32), tf.TensorSpec([total], tf.int32),
                     tf.TensorSpec([total, 4], tf.float32), tf.TensorSpec([total, mask_h, mask_w], tf.float32))
        outputs = tf.map_fn(
            lambda args: detection_targets_graph(*args, self.config),
            (proposals, tf.cast(gt_class_ids, tf.int32), gt_boxes, tf.cast(gt_masks, tf.float32)),
            fn_output_signature=signature)
        rois, class_ids, deltas, masks = outputs
        return [tf.stop_gradient(rois), tf.stop_gradient(class_ids),
                tf.stop_gradient(deltas), tf.stop_gradient(masks)]

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        total = self.config.TRAIN_ROIS_PER_IMAGE
        return [(batch, total, 4), (batch, total), (batch, total, 4),
                (batch, total) + tuple(self.config.MASK_SHAPE)]

    def compute_output_spec(self, inputs):
        shapes = self.compute_output_shape([x.shape for x in inputs])
        dtypes = ["float32", "int32", "float32", "float32"]
        return [keras.KerasTensor(s, dtype=d) for s, d in zip(shapes, dtypes)]
