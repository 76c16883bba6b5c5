"""The inference path as one TensorFlow function: molding, anchors, the graph, unmolding.

``ServingModule(keras_model, config)`` wraps an inference model (its graph
keeps every scored detection, MaskRCNN's default) into a ``tf.Module``
whose ``serve(images, min_confidence)`` takes uint8 images of any size and
returns detections in original pixels with full-size masks, with no numpy
and no mrcnn needed at call time; ``mrcnn.export`` saves it as a SavedModel.

The pre- and post-processing are mrcnn.transform.InferenceTransform's
TensorFlow side (mrcnn.transform_graph), the twin of what detect() runs in
numpy, for IMAGE_RESIZE_MODE "square". The threshold is applied after the
graph by the same rule as detect(min_confidence=...): the result for a
threshold t equals detect() of a model whose graph was built with t,
fallback included (Config.DETECTION_FALLBACK: the graph's fallback
detection, computed for every image, takes slot 0 when nothing passes; its
score is below min_confidence, so a caller can tell it is a fallback).
"""
import tensorflow as tf

from .transform import InferenceTransform
# The TensorFlow twins lived here; tests and tools import them from this module.
from .transform_graph import (bilinear_uint8, mold_graph, paste_mask, resize_uint8,  # noqa: F401
                              select_detections, shades_of_grey_graph, square_geometry,
                              to_original_pixels, unmold_graph)


class ServingModule(tf.Module):
    """A tf.Module holding an inference Keras model's variables and the serving function around it.

    keras_model: MaskRCNN("inference", config, ...).keras_model (IMAGE_RESIZE_MODE
    "square", float32, the graph keeping every scored detection). ``serve(images,
    min_confidence=DETECTION_MIN_CONFIDENCE)``: images uint8 [B, H, W, 3]
    (one size per batch), min_confidence float32 scalar; returns the dict of
    ``unmold_graph`` (N = DETECTION_MAX_INSTANCES).
    """

    def __init__(self, keras_model, config):
        super().__init__(name="mask_rcnn_serving")
        transform = InferenceTransform(config)
        transform.check_servable()
        # Only the variables are tracked, not the Keras layer objects: saving
        # walks every tracked object, and the layers' tree tripled the time.
        self.model_variables = [v.value for v in keras_model.variables]
        anchors = transform.anchors(config.IMAGE_SHAPE)
        default = tf.constant(transform.threshold(), tf.float32)

        def serve(images, min_confidence=default):
            height, width = tf.shape(images)[1], tf.shape(images)[2]
            molded, image_meta, window = transform.mold_graph(images)
            batch_anchors = tf.tile(tf.constant(anchors)[None], [tf.shape(images)[0], 1, 1])
            outputs = keras_model({"input_image": molded, "input_image_meta": image_meta,
                                   "input_anchors": batch_anchors}, training=False)
            return transform.unmold_graph(outputs, window, height, width, min_confidence)

        self._serve_python = serve  # a plain closure: the Keras model stays out of the tracked tree
        self.serve = self.function()

    def function(self, image_size=None, batch=None):
        """The serving tf.function for images [batch, H, W, 3] of image_size (H, W); None: any.

        A SavedModel signature has no default values: the default of
        min_confidence lives on the restored function (loaded.serve(images));
        the signature needs both inputs. A fixed size makes the molding
        geometry constant (TensorFlow Lite).
        """
        height_width = list(image_size) if image_size else [None, None]
        return tf.function(self._serve_python, input_signature=[
            tf.TensorSpec([batch] + height_width + [3], tf.uint8, name="images"),
            tf.TensorSpec([], tf.float32, name="min_confidence")])
