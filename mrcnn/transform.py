"""The two ends of the inference path, owned by one object: ``InferenceTransform``.

In the spirit of torchvision's GeneralizedRCNNTransform, one object holds
the pre-processing (resize, pad, Config.PREPROCESS colour constancy, mean
pixel, the named image meta, anchors) and the post-processing (the runtime
threshold, the fallback detection, boxes back to original pixels, masks
pasted into the boxes the mask head saw), in numpy for MaskRCNN.detect()
and in TensorFlow (mrcnn.transform_graph) for the export (mrcnn.serving).
Both sides read the same rules: the meta layout (images.IMAGE_META_FIELDS),
the score rule (score_floor), the fallback outputs (FALLBACK_OUTPUTS) and
the graph's mask_boxes output (the mask-box scale is applied once, in the
graph's DetectionBoxes).

Why a threshold applied after the graph gives what a graph built with it
gives: the graph's NMS (per class, or across classes for "foreground"
scoring) visits boxes in descending score order and suppresses a box only
by a kept box of higher score, so whether a box scored above t survives
never depends on the boxes scored at or below t. The boxes above t that
survive NMS at threshold 0 are thus exactly those that survive at t, and
they come first in its score-ordered output; the DETECTION_MAX_INSTANCES
cut keeps the highest scores, so it keeps the same ones (if it cut into
them at 0, it cut at the same place at t). Keeping score > t afterwards
therefore yields the same detections in the same order. Only the fallback
(Config.DETECTION_FALLBACK) depends on the threshold, as it fires when
nothing passes: the graph computes it for every image
(detection.FallbackDetection, the rule the graph's own fallback uses) and
the threshold decides here whether it is returned.
"""
import numpy as np

from . import anchors as anchors_lib
from .boxes import denorm_boxes, norm_boxes, scale_boxes
from .images import compose_image_meta, mold_image, resize_image, unmold_mask

# Per-detection outputs of the inference graph [B, N, ...] and, with
# Config.DETECTION_FALLBACK, their fallback twins [B, 1, ...] (mrcnn.graph).
FALLBACK_OUTPUTS = {"detections": "fallback_detections", "detection_probs": "fallback_probs",
                    "mrcnn_mask": "fallback_mask", "mask_boxes": "fallback_mask_boxes"}


def score_floor(min_confidence, maximum=max):
    """The score a detection must exceed: max(min_confidence, 0), the graph's NMS score_threshold rule.

    maximum: max for Python floats, tf.maximum for a tensor threshold (transform_graph).
    """
    return maximum(min_confidence, 0.0)


def transform_of(model):
    """The InferenceTransform of a MaskRCNN (or any object with a .config), with its default threshold.

    MaskRCNN(..., graph_min_confidence=g) makes g the default threshold of
    its detect(), as it was when g was built into the graph.
    """
    return InferenceTransform(model.config, getattr(model, "_graph_min_confidence", None))


class InferenceTransform:
    """Pre- and post-processing of the inference graph for one Config, numpy and TensorFlow.

    min_confidence: the default threshold of ``threshold()`` (None:
    config.DETECTION_MIN_CONFIDENCE, as Matterport).
    """

    def __init__(self, config, min_confidence=None):
        self.config = config
        self.min_confidence = min_confidence

    def threshold(self, min_confidence=None):
        """The detection score threshold of a call: min_confidence, else the default. Returns float."""
        for value in (min_confidence, self.min_confidence, self.config.DETECTION_MIN_CONFIDENCE):
            if value is not None:
                return float(value)

    # ------------------------------------------------------------ pre-processing
    def mold(self, images):
        """Resize, pad and normalise images for the graph (MaskRCNN.mold_inputs).

        images: list of uint8 [H, W, 3]. Returns: molded float32 [N, h, w, 3],
        image_metas float32 [N, META] (images.compose_image_meta, image id 0,
        no active classes), windows int [N, 4] (y1, x1, y2, x2 of the real
        image in the molded one).
        """
        config = self.config
        molded_images, image_metas, windows = [], [], []
        for image in images:
            molded, window, scale, _, _ = resize_image(
                image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
                max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
            image_metas.append(compose_image_meta(0, image.shape, molded.shape, window, scale,
                                                  np.zeros([config.NUM_CLASSES], dtype=np.int32)))
            molded_images.append(mold_image(molded, config))
            windows.append(window)
        return np.stack(molded_images), np.stack(image_metas), np.array(windows)

    def anchors(self, image_shape, count=None):
        """Normalized pyramid anchors of a molded image shape: float32 [A, 4], or [count, A, 4] broadcast."""
        anchors = anchors_lib.get_anchors(self.config, image_shape, normalized=True)
        return anchors if count is None else np.broadcast_to(anchors, (count,) + anchors.shape)

    # ----------------------------------------------------------- post-processing
    def select(self, outputs, min_confidence=None):
        """The detections of one image a threshold keeps (detect()'s rule; transform_graph.select_detections batched).

        outputs: the graph's outputs of one image (batch axis removed):
        detections [N, 6], detection_probs [N, C], mrcnn_mask [N, m, m, C'],
        mask_boxes [N, 4] and, with the fallback, fallback_* [1, ...].
        Keeps the real detections scored above score_floor(threshold); when
        none is and the graph has a fallback, the fallback alone. Returns a
        dict of those four keys holding the kept rows [n, ...], score order.
        """
        floor = np.float32(score_floor(self.threshold(min_confidence)))
        detections = outputs["detections"]
        zero = np.where(detections[:, 4] == 0)[0]  # real detections come first, then zero padding
        count = zero[0] if zero.shape[0] > 0 else detections.shape[0]
        keep = np.where(detections[:count, 5] > floor)[0]
        if not len(keep) and FALLBACK_OUTPUTS["detections"] in outputs:
            return {key: outputs[fallback_key] for key, fallback_key in FALLBACK_OUTPUTS.items()}
        return {key: outputs[key][keep] for key in FALLBACK_OUTPUTS}

    def unmold(self, outputs, original_image_shape, image_shape, window, min_confidence=None):
        """One image's graph outputs -> its detect() dict at the threshold (select, then unmold_detections).

        outputs: as select; image_shape: the molded shape; window: (y1, x1,
        y2, x2) of the real image in it. Returns dict rois int32 [n, 4]
        original pixels, class_ids int32 [n], scores [n], masks bool [H, W, n],
        probs [n, C].
        """
        chosen = self.select(outputs, min_confidence)
        rois, class_ids, scores, masks, probs = self.unmold_detections(
            chosen["detections"], chosen["mrcnn_mask"], original_image_shape, image_shape, window,
            chosen["detection_probs"], mask_boxes=chosen["mask_boxes"])
        return {"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks, "probs": probs}

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape, window, probs=None,
                          mask_boxes=None):
        """Detections of one image in original-image pixels with full-size masks (Matterport's unmold_detections).

        detections: [D, 6] normalized boxes, class id, score (real ones
        first, zero-padded); mrcnn_mask: [D, h, w, C]; probs: [D, C] or None;
        mask_boxes: [D, 4] normalized, the boxes the mask head saw (the
        graph's mask_boxes output); None (a caller holding only detections)
        grows the boxes by DETECTION_MASK_BOX_SCALE as the graph does.
        Boxes with no area in original pixels are dropped. Returns: boxes
        int32 [N, 4], class_ids [N], scores [N], masks bool [H, W, N], probs [N, C].
        """
        config = self.config
        zero_ix = np.where(detections[:, 4] == 0)[0]
        count = zero_ix[0] if zero_ix.shape[0] > 0 else detections.shape[0]
        boxes = detections[:count, :4]
        class_ids = detections[:count, 4].astype(np.int32)
        scores = detections[:count, 5]
        masks = mrcnn_mask[np.arange(count), :, :, class_ids]
        det_probs = probs[:count] if probs is not None else np.zeros((count, config.NUM_CLASSES))
        if mask_boxes is not None:
            mask_boxes = mask_boxes[:count]
        elif config.DETECTION_MASK_BOX_SCALE != 1.0:
            mask_boxes = scale_boxes(boxes, config.DETECTION_MASK_BOX_SCALE)
        else:
            mask_boxes = boxes
        window = norm_boxes(np.array(window), image_shape[:2])
        wy1, wx1, wy2, wx2 = window
        shift = np.array([wy1, wx1, wy1, wx1])
        scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])

        def to_original(normalized):  # molded-image normalized boxes -> original-image pixels
            return denorm_boxes(np.divide(normalized - shift, scale), original_image_shape[:2])

        boxes, mask_boxes = to_original(boxes), to_original(mask_boxes)
        keep = np.where((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)[0]
        boxes, mask_boxes, class_ids, scores, masks, det_probs = (
            boxes[keep], mask_boxes[keep], class_ids[keep], scores[keep], masks[keep], det_probs[keep])
        full_masks = [unmold_mask(masks[i], mask_boxes[i], original_image_shape, config.DETECTION_MASK_THRESHOLD)
                      for i in range(len(keep))]
        if full_masks:
            full_masks = np.stack(full_masks, axis=-1)
        else:
            full_masks = np.zeros(tuple(original_image_shape[:2]) + (0,), dtype=bool)
        return boxes, class_ids, scores, full_masks, det_probs

    # ------------------------------------------------------ TensorFlow (export)
    def check_servable(self):
        """Raise ValueError naming the field when the config cannot run in the TensorFlow path."""
        if self.config.IMAGE_RESIZE_MODE != "square":
            raise ValueError(f"Config.IMAGE_RESIZE_MODE: export supports 'square' (a fixed molded size), "
                             f"the run has {self.config.IMAGE_RESIZE_MODE!r}; retrain or set it to 'square'")

    def mold_graph(self, images):
        """mold in TensorFlow: uint8 images [B, H, W, 3] -> (molded, image_meta, window) (transform_graph.mold_graph)."""
        from .transform_graph import mold_graph
        return mold_graph(images, self.config)

    def unmold_graph(self, outputs, window, height, width, min_confidence):
        """unmold in TensorFlow, batched, min_confidence a float32 tensor (transform_graph.unmold_graph)."""
        from .transform_graph import unmold_graph
        return unmold_graph(outputs, window, height, width, min_confidence, self.config)
