"""The second-stage lesion classifier: its config, the Keras model, and the lesion crop.

The segmenter (a Mask R-CNN run) says where the lesion is; this model says
what it is, from a square crop around the lesion::

    from skinlesion.classifier import ClassifierConfig, build_classifier, lesion_crop
    config = ClassifierConfig(CLASS_SCHEME="isic2017", BACKBONE="efficientnetv2b0")
    model = build_classifier(config, num_classes=3)
    crop, crop_mask, window = lesion_crop(image, mask, config.CROP_MARGIN, config.IMAGE_SIZE)

The model takes the crop as float pixels in 0..255 and, when MASK_MODE is
not "none", the crop of the lesion mask (0..1) as a second input; it returns
softmax probabilities over the scheme's classes (no background column).
Training, calibration and runs live in skinlesion.classifier_train, the
crop cache and data feeding in skinlesion.classifier_data.
"""
import json
import logging
import os

import cv2
import keras
import numpy as np
import tensorflow as tf

from mrcnn.config import ConfigError
from skinlesion.augment import mask_box

log = logging.getLogger(__name__)

# keras.applications backbones (include_top=False) and the public file of
# their ImageNet weights. "tiny" is a few convolutions for tests and demos.
BACKBONE_URLS = {
    "resnet50": "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
                "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "efficientnetv2b0": "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/"
                        "efficientnetv2-b0_notop.h5",
    "convnexttiny": "https://storage.googleapis.com/tensorflow/keras-applications/convnext/"
                    "convnext_tiny_notop.h5",
}
BACKBONES = tuple(BACKBONE_URLS) + ("tiny",)

CHOICES = {
    "BACKBONE": BACKBONES,
    # none: the crop alone; channel: the mask as a 4th input channel;
    # attention: backbone features pooled with weights from the mask.
    "MASK_MODE": ("none", "channel", "attention"),
    # class_weight: loss weights inversely proportional to class counts;
    # balanced_sampling: each batch draws classes equally often.
    "IMBALANCE": ("class_weight", "balanced_sampling", "none"),
    # auto: balanced_accuracy, or "combined" when CRITERIA is set; combined: the mean of the
    # validation balanced accuracy and the mean AUC over the criteria outputs.
    "MONITOR": ("auto", "balanced_accuracy", "auc", "criteria_auc", "combined"),
}

# ResNet50's ImageNet weights expect Caffe preprocessing (BGR, mean removed);
# EfficientNetV2 and ConvNeXt normalise 0..255 input inside their own graph.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class ClassifierConfig:
    """Every tunable of the classifier; upper-case fields as mrcnn.config.Config.

    ClassifierConfig(FIELD=value, ...) overrides the defaults; a bad value
    raises ConfigError naming the field.
    """
    NAME = "classifier"
    CLASS_SCHEME = "isic2017"
    BACKBONE = "efficientnetv2b0"
    # "none" (random init), "imagenet" (downloaded once; offline it fails at
    # once naming the URL) or the path of a keras.applications notop .h5 file.
    WEIGHTS = "none"
    IMAGE_SIZE = 224              # side of the square crop fed to the model, pixels
    MASK_MODE = "none"
    ATTENTION_FLOOR = 0.1         # attention: weight of features outside the lesion (keeps context)
    CROP_MARGIN = 0.25            # fraction of the lesion box's longer side added on each side
    SEGMENTER = ""                # checkpoint of the segmenter run whose masks give the crops ("" = centre crop)
    IMBALANCE = "class_weight"
    LEARNING_RATE = 1e-3
    WEIGHT_DECAY = 1e-4
    BATCH_SIZE = 16
    EPOCHS = 20
    STEPS_PER_EPOCH = 0           # 0: one pass over the training images per epoch
    MINUTES = 0.0                 # wall-clock budget of training; 0: none
    PATIENCE = 0                  # stop after this many epochs without a better MONITOR; 0: never
    MONITOR = "auto"
    DROPOUT = 0.2
    AUGMENT = True                # flips, 90-degree rotations, small colour jitter
    COLOR_JITTER = 0.1            # largest relative brightness / contrast / per-channel gain change
    TTA = True                    # average the plain and flipped crops at validation and prediction
    CALIBRATE = True              # fit a softmax temperature on the validation split
    TINY_FILTERS = 16             # width of the "tiny" backbone
    # Dermoscopic criteria predicted beside the diagnosis (skinlesion.classifier_criteria):
    # "" none, "ph2" (PH2's sheet), "task2" (ISIC 2018 Task 2 attributes) or names joined by ",".
    CRITERIA = ""
    CRITERIA_WEIGHT = 1.0         # weight of the criteria losses (their mean) against the diagnosis loss
    SEED = 0

    def __init__(self, **fields):
        unknown = sorted(set(fields) - set(self.field_names()))
        if unknown:
            raise ConfigError(f"ClassifierConfig: unknown field(s) {', '.join(unknown)}; "
                              f"fields are {', '.join(self.field_names())}")
        for name, value in fields.items():
            setattr(self, name, value)
        self.validate()

    @classmethod
    def field_names(cls):
        """The upper-case field names (sorted); mrcnn.overrides.parse_overrides reads them."""
        return sorted(name for name in dir(cls) if name.isupper() and not name.startswith("__"))

    @classmethod
    def parse_overrides(cls, pairs):
        """``KEY=VALUE`` strings (the CLI's ``--config``) -> {KEY: value} typed like the defaults."""
        from mrcnn.overrides import parse_overrides
        return parse_overrides(cls, pairs)

    def validate(self):
        """Raise ConfigError naming the field when a value cannot be used."""
        for field, allowed in CHOICES.items():
            if getattr(self, field) not in allowed:
                raise ConfigError(f"{field}={getattr(self, field)!r}: choose one of {', '.join(allowed)}")
        if self.WEIGHTS not in ("none", "imagenet") and not os.path.isfile(str(self.WEIGHTS)):
            raise ConfigError(f"WEIGHTS={self.WEIGHTS!r}: use none, imagenet or the path of a "
                              "keras.applications notop .h5 file")
        if self.WEIGHTS != "none" and self.BACKBONE == "tiny":
            raise ConfigError("WEIGHTS: the tiny backbone has no pretrained weights; use WEIGHTS=none")
        if int(self.IMAGE_SIZE) < 32 or int(self.IMAGE_SIZE) % 32:
            raise ConfigError(f"IMAGE_SIZE={self.IMAGE_SIZE}: use a multiple of 32, at least 32")
        for field in ("BATCH_SIZE", "EPOCHS"):
            if int(getattr(self, field)) < 1:
                raise ConfigError(f"{field}={getattr(self, field)}: must be at least 1")
        if not 0 <= float(self.CROP_MARGIN) <= 2:
            raise ConfigError(f"CROP_MARGIN={self.CROP_MARGIN}: use a fraction of the lesion box in 0..2")
        if not 0 <= float(self.ATTENTION_FLOOR) <= 1:
            raise ConfigError(f"ATTENTION_FLOOR={self.ATTENTION_FLOOR}: use a weight in 0..1")
        if float(self.CRITERIA_WEIGHT) < 0:
            raise ConfigError(f"CRITERIA_WEIGHT={self.CRITERIA_WEIGHT}: use a weight >= 0")
        from skinlesion.classifier_criteria import criteria_names
        if not criteria_names(self.CRITERIA) and self.MONITOR in ("criteria_auc", "combined"):
            raise ConfigError(f"MONITOR={self.MONITOR}: needs CRITERIA (e.g. CRITERIA=ph2); "
                              "use balanced_accuracy or auc")

    def monitor(self):
        """The validation score that picks the best epoch: MONITOR with "auto" resolved."""
        if self.MONITOR != "auto":
            return self.MONITOR
        from skinlesion.classifier_criteria import criteria_names
        return "combined" if criteria_names(self.CRITERIA) else "balanced_accuracy"

    def class_names(self):
        """The class names of CLASS_SCHEME in column order (skinlesion.schemes)."""
        from skinlesion import schemes
        return list(schemes.class_names(self.CLASS_SCHEME))

    def to_dict(self):
        """All fields as a dict of plain Python values (a run's config.json)."""
        return {name: getattr(self, name) for name in self.field_names()}

    def to_json(self):
        """The config as an indented JSON string."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, saved, **overrides):
        """A config from a run's config.json dict (unknown keys ignored), then overrides."""
        fields = {k: v for k, v in dict(saved).items() if k in cls.field_names()}
        fields.update(overrides)
        return cls(**fields)


# --------------------------------------------------------------------- crops
def square_window(box, image_shape, margin):
    """The square crop window around a lesion box: (y1, x1, y2, x2) ints, possibly beyond the image.

    box: (y1, x1, y2, x2) pixels; image_shape: (H, W, ...); margin: fraction
    of the box's longer side added on each side. The side is
    longer side x (1 + 2 margin); the window is centred on the box and then
    shifted to stay inside the image, and where the side exceeds the
    image's extent it covers the whole extent (crop_window pads the rest).
    """
    H, W = int(image_shape[0]), int(image_shape[1])
    y1, x1, y2, x2 = [float(v) for v in box]
    side = max(1, int(round(max(y2 - y1, x2 - x1, 1.0) * (1.0 + 2.0 * float(margin)))))
    cy, cx = (y1 + y2) / 2.0, (x1 + x2) / 2.0
    top = int(np.clip(round(cy - side / 2.0), min(0, H - side), max(0, H - side)))
    left = int(np.clip(round(cx - side / 2.0), min(0, W - side), max(0, W - side)))
    return top, left, top + side, left + side


def centre_window(image_shape):
    """The largest centred square (y1, x1, y2, x2) of an image of shape (H, W, ...)."""
    H, W = int(image_shape[0]), int(image_shape[1])
    side = min(H, W)
    top, left = (H - side) // 2, (W - side) // 2
    return top, left, top + side, left + side


def crop_window(array, window, size):
    """array [H, W] or [H, W, C] cut to window (y1, x1, y2, x2), zero-padded outside, resized to [size, size(, C)].

    Area interpolation when shrinking (no aliasing), bilinear when enlarging;
    the dtype is kept.
    """
    y1, x1, y2, x2 = window
    H, W = array.shape[:2]
    pad = [(max(0, -y1), max(0, y2 - H)), (max(0, -x1), max(0, x2 - W))] + [(0, 0)] * (array.ndim - 2)
    cut = array[max(0, y1):min(H, y2), max(0, x1):min(W, x2)]
    if any(p for pair in pad for p in pair):
        cut = np.pad(cut, pad)
    shrink = (y2 - y1) >= size
    resized = cv2.resize(np.ascontiguousarray(cut), (int(size), int(size)),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return resized.reshape((int(size), int(size)) + array.shape[2:]).astype(array.dtype)


def lesion_crop(image, mask, margin, size):
    """The classifier's input: a square crop around the lesion and the mask cut the same way.

    image: uint8 [H, W, 3]; mask: bool [H, W] (the segmenter's lesion mask),
    or None / empty for a centre crop (the largest centred square, mask all
    ones: no lesion information). margin: fraction of the lesion box's
    longer side added on each side (square_window); size: output side.
    Returns (crop uint8 [size, size, 3], crop_mask float32 [size, size] in
    0..1, window (y1, x1, y2, x2) in image pixels, "lesion" or "centre").
    """
    box = mask_box(mask) if mask is not None else None
    if box is None:
        window = centre_window(image.shape)
        return (crop_window(image, window, size), np.ones((int(size), int(size)), np.float32), window,
                "centre")
    window = square_window(box, image.shape, margin)
    crop_mask = crop_window(np.asarray(mask).astype(np.float32), window, size)
    return crop_window(image, window, size), np.clip(crop_mask, 0.0, 1.0), window, "lesion"


# --------------------------------------------------------------------- model
def backbone_weights(config, cache_dir=None):
    """The weights argument for keras.applications: None, or the local path of the notop file.

    "imagenet" is fetched once into ``cache_dir`` (default ~/.keras/models)
    through mrcnn.weights.download_weights; offline it raises RuntimeError
    at once naming the URL and how to pass a local file (--weights PATH).
    """
    if config.WEIGHTS == "none":
        return None
    if config.WEIGHTS != "imagenet":
        return str(config.WEIGHTS)
    from mrcnn.weights import download_weights
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".keras", "models")
    return download_weights(f"{config.BACKBONE} imagenet", cache_dir, url=BACKBONE_URLS[config.BACKBONE])


def _tiny_backbone(size, filters):
    """A few strided convolutions: features [B, size/8, size/8, 4 filters] from 0..255 pixels."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    for scale in (1, 2, 4):
        x = keras.layers.Conv2D(filters * scale, 3, strides=2, padding="same", use_bias=False)(x)
        # A short momentum: tests train for tens of steps, and the default 0.99 leaves the
        # moving statistics near their initial values, so inference sees other features.
        x = keras.layers.BatchNormalization(momentum=0.8)(x)
        x = keras.layers.Activation("relu")(x)
    return keras.Model(inputs, x, name="tiny_backbone")


def build_backbone(config, weights_path=None):
    """The feature extractor: a keras.Model from pixels [B, S, S, 3] in 0..255 to features [B, s, s, C]."""
    size = int(config.IMAGE_SIZE)
    if config.BACKBONE == "tiny":
        return _tiny_backbone(size, int(config.TINY_FILTERS))
    apps = keras.applications
    common = {"include_top": False, "weights": weights_path, "input_shape": (size, size, 3)}
    if config.BACKBONE == "efficientnetv2b0":
        return apps.EfficientNetV2B0(include_preprocessing=True, **common)
    if config.BACKBONE == "convnexttiny":
        return apps.ConvNeXtTiny(include_preprocessing=True, **common)
    inputs = keras.Input((size, size, 3))
    net = apps.ResNet50(**common)
    return keras.Model(inputs, net(CaffePreprocess()(inputs)), name="resnet50_caffe")


class CaffePreprocess(keras.layers.Layer):
    """RGB 0..255 [B, H, W, 3] -> BGR with the ImageNet mean removed (ResNet50's training input)."""

    def call(self, x):
        return tf.reverse(x, axis=[-1]) - tf.constant(CAFFE_MEAN_BGR, x.dtype)


class MaskWeightedPooling(keras.layers.Layer):
    """Attention pooling: features [B, h, w, C] and mask [B, H, W, 1] -> [B, C].

    Each feature position is weighted by floor + (1 - floor) x the mask
    averaged over the position's pixels, so the lesion dominates while the
    surrounding skin still counts.
    """

    def __init__(self, floor=0.1, **kwargs):
        super().__init__(**kwargs)
        self.floor = float(floor)

    def call(self, features, mask):
        size = tf.shape(features)[1:3]
        weights = self.floor + (1.0 - self.floor) * tf.image.resize(mask, size, method="area")
        weights = tf.cast(weights, features.dtype)
        return tf.reduce_sum(features * weights, axis=[1, 2]) / tf.reduce_sum(weights, axis=[1, 2])

    def get_config(self):
        return {**super().get_config(), "floor": self.floor}


def build_classifier(config, num_classes, cache_dir=None):
    """The classifier keras.Model for ``config`` with a softmax head over ``num_classes`` classes.

    Inputs: "image" float32 [B, S, S, 3] (RGB 0..255, S = IMAGE_SIZE) and,
    when MASK_MODE is "channel" or "attention", "mask" float32 [B, S, S, 1]
    in 0..1. Output: probabilities [B, num_classes]; with CRITERIA a dict
    {"class_probs": those, "criterion_<name>": [B, units], ...}
    (skinlesion.classifier_criteria). "channel" joins the mask
    to the pixels through a 1x1 convolution that starts as the identity on
    RGB, so ImageNet weights see their usual input at first. Raises
    RuntimeError (offline, WEIGHTS="imagenet") naming the URL to fetch.
    """
    size = int(config.IMAGE_SIZE)
    backbone = build_backbone(config, backbone_weights(config, cache_dir))
    image = keras.Input((size, size, 3), name="image")
    inputs, pixels = [image], image
    if config.MASK_MODE != "none":
        mask = keras.Input((size, size, 1), name="mask")
        inputs.append(mask)
    if config.MASK_MODE == "channel":
        joined = keras.layers.Concatenate(name="image_and_mask")([image, keras.layers.Rescaling(255.0)(mask)])
        adapter = keras.layers.Conv2D(3, 1, name="mask_channel_adapter")
        pixels = adapter(joined)
        kernel = np.zeros((1, 1, 4, 3), np.float32)
        kernel[0, 0, :3, :3] = np.eye(3)
        adapter.set_weights([kernel, np.zeros(3, np.float32)])
    features = backbone(pixels)
    if config.MASK_MODE == "attention":
        pooled = MaskWeightedPooling(float(config.ATTENTION_FLOOR), name="mask_attention")(features, mask)
    else:
        pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    if float(config.DROPOUT) > 0:
        pooled = keras.layers.Dropout(float(config.DROPOUT), name="dropout")(pooled)
    probs = keras.layers.Dense(int(num_classes), activation="softmax", dtype="float32",
                               name="class_probs")(pooled)
    from skinlesion.classifier_criteria import add_heads, outputs_of
    outputs = outputs_of(config)
    if outputs:
        probs = {"class_probs": probs, **add_heads(pooled, features, outputs)}
    return keras.Model({"image": image, "mask": mask} if len(inputs) > 1 else image, probs,
                       name=f"classifier_{config.BACKBONE}")


def model_inputs(config, crops, masks):
    """What build_classifier's model takes for a batch.

    crops: uint8 [B, S, S, 3]; masks: float [B, S, S] in 0..1. Returns
    float32 [B, S, S, 3], or {"image": that, "mask": float32 [B, S, S, 1]}
    when MASK_MODE uses the mask.
    """
    images = np.asarray(crops, np.float32)
    if config.MASK_MODE == "none":
        return images
    return {"image": images, "mask": np.asarray(masks, np.float32)[..., None]}
