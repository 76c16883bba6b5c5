"""ProposalLayer: RPN scores and deltas -> a fixed number of proposals per image."""
import numpy as np
import tensorflow as tf

from .box_graph import apply_box_deltas_graph, clip_boxes_graph
from .precision import Float32Layer


def _nms_padded(boxes, scores, max_output, iou_threshold):
    """NMS on one image, zero-padded to max_output rows.

    boxes: [N, 4]; scores: [N]. Returns: [max_output, 4].
    """
    keep = tf.image.non_max_suppression(boxes, scores, max_output, iou_threshold)
    kept = tf.gather(boxes, keep)
    padding = tf.maximum(max_output - tf.shape(kept)[0], 0)
    return tf.pad(kept, [(0, padding), (0, 0)])


class ProposalLayer(Float32Layer):
    """Top-scoring anchors, refined by the RPN deltas, clipped and NMS-filtered.

    Inputs: rpn_probs [B, A, 2], rpn_bbox [B, A, 4] deltas, anchors [B, A, 4]
    normalized. Output: proposals [B, proposal_count, (y1, x1, y2, x2)]
    normalized, zero-padded when fewer survive NMS.
    """

    def __init__(self, proposal_count, nms_threshold, pre_nms_limit, rpn_bbox_std_dev, **kwargs):
        super().__init__(**kwargs)
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(pre_nms_limit)
        self.rpn_bbox_std_dev = [float(v) for v in np.reshape(rpn_bbox_std_dev, [4])]

    def call(self, inputs):
        rpn_probs, rpn_bbox, anchors = inputs
        scores = rpn_probs[:, :, 1]
        deltas = rpn_bbox * tf.constant(self.rpn_bbox_std_dev, dtype=rpn_bbox.dtype)
        k = tf.minimum(self.pre_nms_limit, tf.shape(scores)[1])
        top = tf.math.top_k(scores, k=k, sorted=True)
        scores = top.values
        deltas = tf.gather(deltas, top.indices, batch_dims=1)
        anchors = tf.gather(anchors, top.indices, batch_dims=1)
        boxes = apply_box_deltas_graph(anchors, deltas)
        boxes = clip_boxes_graph(boxes, tf.constant([0., 0., 1., 1.], dtype=boxes.dtype))

        def per_image(args):
            image_boxes, image_scores = args
            return _nms_padded(image_boxes, image_scores, self.proposal_count, self.nms_threshold)

        proposals = tf.map_fn(per_image, (boxes, scores),
                              fn_output_signature=tf.TensorSpec([self.proposal_count, 4], boxes.dtype))
        return tf.ensure_shape(proposals, [None, self.proposal_count, 4])

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.proposal_count, 4)

    def get_config(self):
        config = super().get_config()
        config.update(proposal_count=self.proposal_count, nms_threshold=self.nms_threshold,
                      pre_nms_limit=self.pre_nms_limit, rpn_bbox_std_dev=self.rpn_bbox_std_dev)
        return config
