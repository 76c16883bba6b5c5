"""ResNet-50/101 backbone and Feature Pyramid Network, with Matterport's layer names.

Layer names (conv1, bn_conv1, res2a_branch2a, bn2a_branch2a, ..., fpn_c5p5,
fpn_p2 ...) match Matterport's so a ``mask_rcnn_coco.h5`` loads by name.
"""
import keras
import tensorflow as tf
from keras import layers

from .config import CHOICES

NORMS = CHOICES["NORM"]


def norm_layer(name, momentum=0.99, kind="batch", groups=32):
    """Normalization layer under a Matterport name (bn_conv1, bn2a_branch2a, mrcnn_mask_bn1 ...).

    kind "batch": BatchNormalization (Matterport; loads mask_rcnn_coco.h5).
    kind "group": GroupNormalization with ``groups`` groups (fewer when the
    channel count does not divide): per-image statistics, identical in
    training and inference, which is what small-batch training from scratch
    needs (Wu & He, "Group Normalization", 2018). Works on [..., C] tensors
    of any rank. groups=1 is layer normalization over the channels.
    """
    if kind == "batch":
        return FusedBatchNorm(name=name, momentum=momentum)
    if kind == "group":
        return _GroupNorm(groups=groups, name=name)
    raise ValueError(f"NORM: unknown normalization {kind!r}; use one of {NORMS}")


class FusedBatchNorm(layers.BatchNormalization):
    """keras BatchNormalization computed by TensorFlow's fused kernel; same weights, names and results.

    Keras 3 normalizes with separate moments / scale / shift ops in float32
    (bfloat16 activations are cast up and back), so a training step walks
    each activation tensor several times forward and again backward; the
    fused op (FusedBatchNormV3, oneDNN on CPU) does one pass each way and
    reads bfloat16 directly. Moving statistics follow Keras' rule (biased
    batch variance). Inputs of another rank than 4, or with a mask, use
    Keras' own path. x: [B, H, W, C] -> [B, H, W, C] in the compute dtype.
    """

    def call(self, inputs, training=None, mask=None):
        if mask is not None or len(inputs.shape) != 4 or self.axis not in (-1, 3) \
                or not (self.scale and self.center):
            return super().call(inputs, training=training, mask=mask)
        x = inputs if inputs.dtype in (tf.float32, tf.bfloat16) else tf.cast(inputs, tf.float32)
        batch_statistics = bool(training and self.trainable)
        # In training the kernel computes the batch statistics (mean and variance given empty).
        given = ([], []) if batch_statistics else (self.moving_mean, self.moving_variance)
        y, mean, variance = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=tf.cast(self.gamma, tf.float32), offset=tf.cast(self.beta, tf.float32),
            mean=tf.cast(given[0], tf.float32), variance=tf.cast(given[1], tf.float32),
            epsilon=self.epsilon, data_format="NHWC", is_training=batch_statistics)[:3]
        if batch_statistics:
            # The kernel returns the unbiased (n - 1) batch variance; Keras keeps the biased one.
            count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
            variance = variance * tf.maximum(count - 1.0, 1.0) / tf.maximum(count, 1.0)
            momentum = self.momentum
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return tf.cast(y, self.compute_dtype)


def group_norm(x, gamma, beta, groups, epsilon):
    """Group normalization of NHWC activations with a hand-written gradient.

    x: [B, H, W, C] float32 or bfloat16; gamma, beta: [C] float32; C divisible
    by groups. Statistics per image and group over (H, W, C / groups), in
    float32, the variance as E[x^2] - E[x]^2 (one pass; exact enough unless a
    group's mean is thousands of times its spread, which normalized
    activations are not). Same result as keras' GroupNormalization, at about half the cost
    forward+backward on CPU: the sums run over the contiguous channel axis
    first (TF reduces a strided axis set several times slower) and the
    gradient is three reductions and one fused expression, not autodiff's
    chain of broadcasts. Returns: [B, H, W, C] in x's dtype.
    """
    shape = tf.shape(x)
    channels = x.shape[-1]
    per_group = channels // groups

    @tf.custom_gradient
    def normalize(x, gamma, beta):
        x4 = tf.reshape(tf.cast(x, tf.float32), [shape[0], -1, groups, per_group])  # [B, N, G, c]
        count = tf.cast(tf.shape(x4)[1] * per_group, tf.float32)

        def group_sum(t):  # [B, N, G, c] -> [B, 1, G, 1]
            return tf.reduce_sum(tf.reduce_sum(t, 3, keepdims=True), 1, keepdims=True)

        mean = group_sum(x4) / count
        variance = tf.maximum(group_sum(tf.square(x4)) / count - tf.square(mean), 0.0)
        inv = tf.math.rsqrt(variance + epsilon)  # [B, 1, G, 1]
        gamma4 = tf.reshape(gamma, [1, 1, groups, per_group])
        scale = inv * gamma4  # [B, 1, G, c]
        y = tf.reshape(x4 * scale + (tf.reshape(beta, [1, 1, groups, per_group]) - mean * scale), shape)

        def grad(dy):
            dy4 = tf.reshape(tf.cast(dy, tf.float32), tf.shape(x4))
            dy_sum = tf.reduce_sum(dy4, 1, keepdims=True)  # [B, 1, G, c]
            dy_x_sum = tf.reduce_sum(dy4 * x4, 1, keepdims=True)
            dy_xhat_sum = inv * (dy_x_sum - mean * dy_sum)  # sum over N of dy * xhat, [B, 1, G, c]
            d_beta = tf.reshape(tf.reduce_sum(dy_sum, [0, 1]), [channels])
            d_gamma = tf.reshape(tf.reduce_sum(dy_xhat_sum, [0, 1]), [channels])
            # dx = inv * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma, means over (N, c):
            # written as dy * scale + x * p + q with p, q per image and group.
            s1 = tf.reduce_sum(gamma4 * dy_sum, 3, keepdims=True)  # [B, 1, G, 1]
            s2 = tf.reduce_sum(gamma4 * dy_xhat_sum, 3, keepdims=True)
            p = -inv * inv * s2 / count
            q = -inv * s1 / count - mean * p
            dx = tf.reshape(dy4 * scale + (x4 * p + q), shape)
            return tf.cast(dx, x.dtype), d_gamma, d_beta

        return tf.cast(y, x.dtype), grad

    return normalize(x, tf.cast(gamma, tf.float32), tf.cast(beta, tf.float32))


class _GroupNorm(layers.GroupNormalization):
    """GroupNormalization that picks its group count from the channel count at build time.

    4-D NHWC inputs use group_norm (same result, about half the time);
    other ranks keras' own implementation.
    """

    def __init__(self, groups=32, **kwargs):
        super().__init__(groups=groups, epsilon=1e-5, **kwargs)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        groups = min(self.groups, channels)
        while channels % groups:
            groups -= 1
        self.groups = groups
        super().build(input_shape)

    def call(self, inputs):
        if len(inputs.shape) != 4 or self.axis not in (-1, 3) or not (self.scale and self.center):
            return super().call(inputs)
        return tf.cast(group_norm(inputs, self.gamma, self.beta, self.groups, self.epsilon), self.compute_dtype)


def _bottleneck_branch(x, kernel_size, filters, stage, block, strides, use_bias, bn_momentum, norm):
    """The 1x1 -> kxk -> 1x1 main branch of a ResNet bottleneck (stride on the first 1x1, Caffe style).

    x: [B, H, W, C]. Returns: [B, H/strides, W/strides, filters[2]] before the
    residual add (no final ReLU).
    """
    f1, f2, f3 = filters
    conv = f"res{stage}{block}_branch"
    bn = f"bn{stage}{block}_branch"
    y = layers.Conv2D(f1, 1, strides=strides, name=conv + "2a", use_bias=use_bias)(x)
    y = norm_layer(bn + "2a", bn_momentum, norm)(y)
    y = layers.Activation("relu")(y)
    y = layers.Conv2D(f2, kernel_size, padding="same", name=conv + "2b", use_bias=use_bias)(y)
    y = norm_layer(bn + "2b", bn_momentum, norm)(y)
    y = layers.Activation("relu")(y)
    y = layers.Conv2D(f3, 1, name=conv + "2c", use_bias=use_bias)(y)
    return norm_layer(bn + "2c", bn_momentum, norm)(y)


def identity_block(x, kernel_size, filters, stage, block, use_bias=True, bn_momentum=0.99, norm="batch"):
    """ResNet bottleneck block whose shortcut is the identity.

    x: [B, H, W, C] with C == filters[2]. Returns: [B, H, W, filters[2]].
    """
    y = _bottleneck_branch(x, kernel_size, filters, stage, block, 1, use_bias, bn_momentum, norm)
    y = layers.Add()([y, x])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(y)


def conv_block(x, kernel_size, filters, stage, block, strides=2, use_bias=True, bn_momentum=0.99,
               norm="batch"):
    """ResNet bottleneck block with a projection shortcut.

    x: [B, H, W, C]. Returns: [B, H/strides, W/strides, filters[2]].
    """
    y = _bottleneck_branch(x, kernel_size, filters, stage, block, strides, use_bias, bn_momentum, norm)
    shortcut = layers.Conv2D(filters[2], 1, strides=strides, name=f"res{stage}{block}_branch1",
                             use_bias=use_bias)(x)
    shortcut = norm_layer(f"bn{stage}{block}_branch1", bn_momentum, norm)(shortcut)
    y = layers.Add()([y, shortcut])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(y)


def resnet_graph(input_image, architecture, stage5=True, bn_momentum=0.99, norm="batch"):
    """ResNet stages C1-C5.

    input_image: [B, H, W, 3] molded image. architecture: "resnet50" | "resnet101".
    norm: "batch" (Matterport) or "group" (see norm_layer).
    Returns: [C1, C2, C3, C4, C5] at strides 2, 4, 8, 16, 32 (C5 None if not stage5).
    """
    if architecture not in ("resnet50", "resnet101"):
        raise ValueError(f"BACKBONE: unknown architecture {architecture!r}; use resnet50 or resnet101")
    if norm not in NORMS:
        raise ValueError(f"NORM: unknown normalization {norm!r}; use one of {NORMS}")
    opts = dict(bn_momentum=bn_momentum, norm=norm)
    x = layers.ZeroPadding2D((3, 3))(input_image)
    x = layers.Conv2D(64, 7, strides=2, name="conv1", use_bias=True)(x)
    x = norm_layer("bn_conv1", bn_momentum, norm)(x)
    x = layers.Activation("relu")(x)
    c1 = x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = conv_block(x, 3, [64, 64, 256], stage=2, block="a", strides=1, **opts)
    x = identity_block(x, 3, [64, 64, 256], stage=2, block="b", **opts)
    c2 = x = identity_block(x, 3, [64, 64, 256], stage=2, block="c", **opts)
    x = conv_block(x, 3, [128, 128, 512], stage=3, block="a", **opts)
    for block in "bcd":
        x = identity_block(x, 3, [128, 128, 512], stage=3, block=block, **opts)
    c3 = x
    x = conv_block(x, 3, [256, 256, 1024], stage=4, block="a", **opts)
    block_count = {"resnet50": 5, "resnet101": 22}[architecture]
    for i in range(block_count):
        x = identity_block(x, 3, [256, 256, 1024], stage=4, block=chr(98 + i), **opts)
    c4 = x
    c5 = None
    if stage5:
        x = conv_block(x, 3, [512, 512, 2048], stage=5, block="a", **opts)
        x = identity_block(x, 3, [512, 512, 2048], stage=5, block="b", **opts)
        c5 = identity_block(x, 3, [512, 512, 2048], stage=5, block="c", **opts)
    return [c1, c2, c3, c4, c5]


def fpn_graph(c2, c3, c4, c5, depth):
    """Feature Pyramid Network top-down path.

    c2..c5: backbone maps at strides 4..32. depth: channels of every P level.
    Returns: [P2, P3, P4, P5, P6], each [B, H/stride, W/stride, depth]; P6 is a
    stride-2 subsample of P5 used only by the RPN.
    """
    p5 = layers.Conv2D(depth, 1, name="fpn_c5p5")(c5)
    p4 = layers.Add(name="fpn_p4add")([
        layers.UpSampling2D(2, name="fpn_p5upsampled")(p5),
        layers.Conv2D(depth, 1, name="fpn_c4p4")(c4)])
    p3 = layers.Add(name="fpn_p3add")([
        layers.UpSampling2D(2, name="fpn_p4upsampled")(p4),
        layers.Conv2D(depth, 1, name="fpn_c3p3")(c3)])
    p2 = layers.Add(name="fpn_p2add")([
        layers.UpSampling2D(2, name="fpn_p3upsampled")(p3),
        layers.Conv2D(depth, 1, name="fpn_c2p2")(c2)])
    p2 = layers.Conv2D(depth, 3, padding="same", name="fpn_p2")(p2)
    p3 = layers.Conv2D(depth, 3, padding="same", name="fpn_p3")(p3)
    p4 = layers.Conv2D(depth, 3, padding="same", name="fpn_p4")(p4)
    p5 = layers.Conv2D(depth, 3, padding="same", name="fpn_p5")(p5)
    p6 = layers.MaxPooling2D(pool_size=1, strides=2, name="fpn_p6")(p5)
    return [p2, p3, p4, p5, p6]


def build_backbone(input_image, config):
    """Backbone + FPN for a config.

    input_image: [B, H, W, 3]. Returns: rpn_feature_maps [P2..P6] and
    mrcnn_feature_maps [P2..P5].
    """
    if callable(config.BACKBONE):
        _, c2, c3, c4, c5 = config.BACKBONE(input_image, config)
    else:
        _, c2, c3, c4, c5 = resnet_graph(input_image, config.BACKBONE, stage5=True,
                                        bn_momentum=config.BATCH_NORM_MOMENTUM, norm=config.NORM)
    pyramid = fpn_graph(c2, c3, c4, c5, config.TOP_DOWN_PYRAMID_SIZE)
    return pyramid, pyramid[:4]


def backbone_model(config, image_shape=None):
    """A stand-alone backbone+FPN keras.Model (for benchmarks: the detector's floor).

    Returns: keras.Model mapping [B, H, W, 3] -> [P2, P3, P4, P5, P6].
    """
    shape = tuple(image_shape) if image_shape is not None else tuple(config.IMAGE_SHAPE)
    inp = keras.Input(shape=shape, name="input_image")
    pyramid, _ = build_backbone(inp, config)
    return keras.Model(inp, pyramid, name="backbone_fpn")
