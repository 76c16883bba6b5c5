"""PyramidROIAlign: crop each ROI from the FPN level that suits its size."""
import tensorflow as tf

from .precision import Float32Layer


def roi_levels(boxes, image_shape):
    """FPN level (2..5) of each ROI, as in the FPN paper (k0 = 4 for a 224 px ROI).

    boxes: [..., 4] normalized; image_shape: (H, W) of the model input.
    Returns: int32 [...] in 2..5.
    """
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    image_area = float(image_shape[0] * image_shape[1])
    # sqrt(h*w) of a normalized box times sqrt(image_area) is its side in pixels.
    side_px = tf.sqrt(tf.maximum(height * width, 1e-12)) * (image_area ** 0.5)
    level = 4.0 + tf.round(tf.math.log(side_px / 224.0) / tf.math.log(2.0))
    return tf.cast(tf.clip_by_value(level, 2.0, 5.0), tf.int32)


class PyramidROIAlign(Float32Layer):
    """Crop-and-resize ROIs from P2-P5 by level.

    Inputs: boxes [B, N, (y1, x1, y2, x2)] normalized, then the feature maps
    [P2, P3, P4, P5], each [B, h, w, C].
    Output: [B, N, pool_h, pool_w, C], in the order of the boxes.
    """

    def __init__(self, pool_shape, image_shape, **kwargs):
        super().__init__(**kwargs)
        self.pool_shape = tuple(int(v) for v in pool_shape)
        self.image_shape = tuple(int(v) for v in image_shape[:2])

    def call(self, inputs):
        boxes = inputs[0]
        feature_maps = inputs[1:]
        levels = roi_levels(boxes, self.image_shape)  # [B, N]
        batch = tf.shape(boxes)[0]
        num_boxes = tf.shape(boxes)[1]
        pooled = []
        order = []
        for i, level in enumerate(range(2, 6)):
            ix = tf.where(tf.equal(levels, level))  # [M, 2] (batch index, box index)
            level_boxes = tf.stop_gradient(tf.gather_nd(boxes, ix))
            box_indices = tf.stop_gradient(tf.cast(ix[:, 0], tf.int32))
            # Bilinear crop at the pool size (Matterport's simplification of the paper's 2x2 samples).
            pooled.append(tf.image.crop_and_resize(feature_maps[i], level_boxes, box_indices,
                                                   self.pool_shape, method="bilinear"))
            order.append(tf.cast(ix[:, 0], tf.int32) * num_boxes + tf.cast(ix[:, 1], tf.int32))
        pooled = tf.concat(pooled, axis=0)
        order = tf.concat(order, axis=0)
        # Scatter the crops back to (batch, box) order.
        pooled = tf.gather(pooled, tf.argsort(order))
        channels = feature_maps[0].shape[-1]
        out = tf.reshape(pooled, [batch, num_boxes, self.pool_shape[0], self.pool_shape[1], channels])
        return out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:2]) + self.pool_shape + (input_shape[1][-1],)

    def get_config(self):
        config = super().get_config()
        config.update(pool_shape=self.pool_shape, image_shape=self.image_shape)
        return config
