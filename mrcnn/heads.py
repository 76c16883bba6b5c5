"""Classifier/box head and mask head on pooled ROIs.

Matterport wrapped each head layer in TimeDistributed. We fold the ROI axis
into the batch axis instead ([B, N, ...] -> [B*N, ...]): the same layer names
and weight shapes (so Matterport weights load), without TimeDistributed's
shape inference pitfalls in Keras 3, and one big convolution per layer.
"""
import tensorflow as tf
from keras import layers

from .backbone import norm_layer
from .precision import Float32Layer
from .roi_align import PyramidROIAlign


class FoldROIs(Float32Layer):
    """[B, N, ...] -> [B*N, ...]."""

    def call(self, x):
        return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], axis=0))

    def compute_output_shape(self, input_shape):
        batch, rois = input_shape[0], input_shape[1]
        folded = batch * rois if batch is not None and rois is not None else None
        return (folded,) + tuple(input_shape[2:])


class UnfoldROIs(Float32Layer):
    """[B*N, ...] -> [B, N, ...].

    With ``num_rois`` set, N is that fixed count (the ROI count Config pins).
    With ``num_rois=None`` the layer takes ``[x, rois]`` and reads B and N from
    rois [B, N, 4] (a dynamic count, e.g. only the real detections).
    """

    def __init__(self, num_rois=None, **kwargs):
        super().__init__(**kwargs)
        self.num_rois = None if num_rois is None else int(num_rois)

    def call(self, inputs):
        if self.num_rois is None:
            x, rois = inputs
            lead = tf.shape(rois)[:2]
        else:
            x = inputs
            lead = tf.constant([-1, self.num_rois])
        return tf.reshape(x, tf.concat([lead, tf.shape(x)[1:]], axis=0))

    def compute_output_shape(self, input_shape):
        if self.num_rois is None:
            x_shape, rois_shape = input_shape
            return (rois_shape[0], rois_shape[1]) + tuple(x_shape[1:])
        return (None, self.num_rois) + tuple(input_shape[1:])

    def get_config(self):
        config = super().get_config()
        config.update(num_rois=self.num_rois)
        return config


class ShareAcrossClasses(Float32Layer):
    """Repeat a class-agnostic output for every class along one axis.

    Masks: [B, N, h, w, 1] -> [B, N, h, w, C] (axis -1). Box deltas:
    [B, N, 1, 4] -> [B, N, C, 4] (axis -2). Class-agnostic heads use it so the
    losses, the detection layer and unmolding keep their per-class indexing
    while every class reads (and trains) the same single output.
    """

    def __init__(self, num_classes, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.axis = int(axis)

    def call(self, x):
        multiples = [1] * len(x.shape)
        multiples[self.axis] = self.num_classes
        return tf.tile(x, multiples)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        shape[self.axis] = self.num_classes
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, axis=self.axis)
        return config


class PooledConv2D(layers.Conv2D):
    """A "valid" Conv2D whose kernel covers its whole input, computed as one matrix product.

    x: [N, k, k, C] -> [N, 1, 1, filters]; the kernel keeps Conv2D's
    [k, k, C, filters] shape and name (Matterport's ``mrcnn_class_conv1``, so
    ``mask_rcnn_coco.h5`` loads). Same result as the convolution, but the
    gradient is two matrix products: TensorFlow's CPU kernels for the
    backward pass of a 7x7 "valid" convolution with a 1x1 output ran about
    100x slower than the product on the Eigen path (21 s against 0.2 s for
    400 ROIs, 256 -> 1024 channels; bench/README.md) and 10x slower with oneDNN.
    """

    def build(self, input_shape):
        spatial = tuple(input_shape[1:3])
        if spatial != tuple(self.kernel_size) or self.padding != "valid" or self.data_format != "channels_last":
            raise ValueError(f"{self.name}: PooledConv2D needs a 'valid' kernel {tuple(self.kernel_size)} "
                             f"equal to the input's spatial size {spatial} (channels last)")
        super().build(input_shape)

    def call(self, inputs):
        count = tf.shape(inputs)[0]
        flat = tf.reshape(inputs, [count, -1])  # [N, k*k*C], row-major like the kernel
        kernel = tf.reshape(tf.cast(self.kernel, flat.dtype), [-1, self.filters])
        y = tf.matmul(flat, kernel)
        if self.use_bias:
            y = tf.nn.bias_add(y, tf.cast(self.bias, y.dtype))
        y = tf.reshape(y, [count, 1, 1, self.filters])
        return self.activation(y) if self.activation is not None else y


class BoxDeltasReshape(Float32Layer):
    """[B, N, num_classes * 4] -> [B, N, num_classes, 4]."""

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)

    def call(self, x):
        return tf.reshape(x, [-1, x.shape[1], self.num_classes, 4])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.num_classes, 4)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes)
        return config


def fpn_classifier_graph(rois, feature_maps, num_rois, config):
    """Classifier and box-regression head.

    rois: [B, N, 4] normalized; feature_maps: [P2..P5].
    Returns: mrcnn_class_logits [B, N, C], mrcnn_probs [B, N, C],
    mrcnn_bbox [B, N, C, (dy, dx, log(dh), log(dw))].
    With config.CLASS_AGNOSTIC_BOXES one set of deltas is regressed per ROI
    and repeated for all C classes (mrcnn_bbox_fc then has 4 outputs).
    """
    pool = config.POOL_SIZE
    fc = config.FPN_CLASSIF_FC_LAYERS_SIZE
    x = PyramidROIAlign([pool, pool], config.IMAGE_SHAPE, name="roi_align_classifier")([rois] + feature_maps)
    x = FoldROIs(name="mrcnn_class_fold")(x)
    x = PooledConv2D(fc, pool, padding="valid", name="mrcnn_class_conv1")(x)
    groups = config.CLASSIFIER_NORM_GROUPS
    x = norm_layer("mrcnn_class_bn1", config.BATCH_NORM_MOMENTUM, config.NORM, groups)(x)
    x = layers.Activation("relu")(x)
    x = PooledConv2D(fc, 1, name="mrcnn_class_conv2")(x)
    x = norm_layer("mrcnn_class_bn2", config.BATCH_NORM_MOMENTUM, config.NORM, groups)(x)
    x = layers.Activation("relu")(x)
    shared = layers.Flatten(name="pool_squeeze")(x)
    logits = layers.Dense(config.NUM_CLASSES, name="mrcnn_class_logits", dtype="float32")(shared)
    logits = UnfoldROIs(num_rois, name="mrcnn_class_unfold")(logits)
    probs = layers.Activation("softmax", name="mrcnn_class", dtype="float32")(logits)
    agnostic = bool(config.CLASS_AGNOSTIC_BOXES)
    bbox = layers.Dense(4 if agnostic else config.NUM_CLASSES * 4, name="mrcnn_bbox_fc", dtype="float32")(shared)
    bbox = UnfoldROIs(num_rois, name="mrcnn_bbox_unfold")(bbox)
    if agnostic:
        bbox = BoxDeltasReshape(1, name="mrcnn_bbox_agnostic")(bbox)
        bbox = ShareAcrossClasses(config.NUM_CLASSES, axis=-2, name="mrcnn_bbox")(bbox)
    else:
        bbox = BoxDeltasReshape(config.NUM_CLASSES, name="mrcnn_bbox")(bbox)
    return logits, probs, bbox


def build_fpn_mask_graph(rois, feature_maps, num_rois, config):
    """Mask head.

    rois: [B, N, 4] normalized; feature_maps: [P2..P5]; num_rois: N when it
    is fixed, None for a dynamic count.
    Returns: masks [B, N, MASK_H, MASK_W, C] sigmoid probabilities per class.
    With config.CLASS_AGNOSTIC_MASKS one mask is predicted per ROI and repeated
    for all C classes (mrcnn_mask then has 1 output channel).
    """
    pool = config.MASK_POOL_SIZE
    x = PyramidROIAlign([pool, pool], config.IMAGE_SHAPE, name="roi_align_mask")([rois] + feature_maps)
    x = FoldROIs(name="mrcnn_mask_fold")(x)
    channels = int(config.MASK_HEAD_CHANNELS)
    for i in range(1, 5):
        x = layers.Conv2D(channels, 3, padding="same", name=f"mrcnn_mask_conv{i}")(x)
        x = norm_layer(f"mrcnn_mask_bn{i}", config.BATCH_NORM_MOMENTUM, config.NORM)(x)
        x = layers.Activation("relu")(x)
    x = layers.Conv2DTranspose(channels, 2, strides=2, activation="relu", name="mrcnn_mask_deconv")(x)
    agnostic = bool(config.CLASS_AGNOSTIC_MASKS)
    x = layers.Conv2D(1 if agnostic else config.NUM_CLASSES, 1, activation="sigmoid", name="mrcnn_mask",
                      dtype="float32")(x)
    if agnostic:
        x = ShareAcrossClasses(config.NUM_CLASSES, name="mrcnn_mask_share")(x)
    if num_rois is None:
        return UnfoldROIs(None, name="mrcnn_mask_unfold")([x, rois])
    return UnfoldROIs(num_rois, name="mrcnn_mask_unfold")(x)
