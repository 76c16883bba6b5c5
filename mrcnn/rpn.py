"""Region Proposal Network head, shared over pyramid levels (Matterport's rpn_model)."""
import keras
from keras import layers


def rpn_graph(feature_map, anchors_per_location, anchor_stride, channels=512):
    """RPN head on one feature map.

    feature_map: [B, H, W, depth]. channels: width of the shared 3x3 conv
    (Matterport 512; torchvision uses the FPN depth).
    Returns: rpn_class_logits [B, H*W*anchors, 2], rpn_probs [B, H*W*anchors, 2],
    rpn_bbox [B, H*W*anchors, (dy, dx, log(dh), log(dw))].
    """
    shared = layers.Conv2D(channels, 3, padding="same", activation="relu", strides=anchor_stride,
                           name="rpn_conv_shared")(feature_map)
    # The prediction layers stay float32 under a bfloat16 policy (mrcnn.precision).
    x = layers.Conv2D(2 * anchors_per_location, 1, padding="valid", activation="linear",
                      name="rpn_class_raw", dtype="float32")(shared)
    rpn_class_logits = layers.Reshape((-1, 2), dtype="float32")(x)
    rpn_probs = layers.Activation("softmax", name="rpn_class_xxx", dtype="float32")(rpn_class_logits)
    x = layers.Conv2D(anchors_per_location * 4, 1, padding="valid", activation="linear",
                      name="rpn_bbox_pred", dtype="float32")(shared)
    rpn_bbox = layers.Reshape((-1, 4), dtype="float32")(x)
    return [rpn_class_logits, rpn_probs, rpn_bbox]


def build_rpn_model(anchor_stride, anchors_per_location, depth, channels=512):
    """The RPN as a nested keras.Model named "rpn_model" so its weights are shared by all levels.

    Returns: keras.Model [B, H, W, depth] -> [logits, probs, bbox] (shapes as rpn_graph).
    """
    input_feature_map = keras.Input(shape=(None, None, depth), name="input_rpn_feature_map")
    outputs = rpn_graph(input_feature_map, anchors_per_location, anchor_stride, channels)
    return keras.Model(input_feature_map, outputs, name="rpn_model")
