"""Config: every tunable of the Mask R-CNN in one place, with derived attributes.

Subclass it and override class attributes (Matterport's pattern). Derived
values (BATCH_SIZE, IMAGE_SHAPE, IMAGE_META_SIZE, BACKBONE_STRIDES use) are
computed in ``__init__`` and checked, so a bad value fails at construction with
a message that names the field.
"""
import difflib
import json
import logging

import numpy as np

log = logging.getLogger(__name__)

# The allowed values of the fields that take one of a few words, in one place
# (validate() checks them; mrcnn.precision, mrcnn.backbone and the CLI read them).
# COMPUTE_DTYPE "auto" is resolved per machine by mrcnn.runtime.resolve_compute_dtype.
CHOICES = {
    "COMPUTE_DTYPE": ("auto", "float32", "bfloat16"),
    "LEARNING_RATE_DECAY": ("none", "cosine"),
    "DETECTION_SCORE": ("class", "foreground"),
    "PREPROCESS": ("none", "shades_of_grey"),
    "NORM": ("batch", "group"),
    "OPTIMIZER": ("sgd", "adam"),
    "IMAGE_RESIZE_MODE": ("square", "pad64", "crop", "none"),
}
COMPUTE_DTYPES = CHOICES["COMPUTE_DTYPE"]
# Upper-case class attributes of Config that describe the fields rather than being one.
_NOT_FIELDS = frozenset({"ARCHITECTURE_FIELDS"})
LEARNING_RATE_DECAYS = CHOICES["LEARNING_RATE_DECAY"]


class ConfigError(ValueError):
    """A Config field holds a value the model cannot use."""


def nearest_fields_hint(name, fields, otherwise=""):
    """"; did you mean A, B?" for the field names closest to ``name``, else ``otherwise``."""
    near = difflib.get_close_matches(str(name).upper(), list(fields), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(near)}?" if near else otherwise


class Config:
    """Base configuration. Field names and defaults follow Matterport's."""

    NAME = None  # Override in sub-classes
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2
    STEPS_PER_EPOCH = 1000
    VALIDATION_STEPS = 50

    # "resnet50", "resnet101" or a callable graph(input_image, config) -> [C2..C5]
    BACKBONE = "resnet101"
    # Only needed for a callable backbone.
    COMPUTE_BACKBONE_SHAPE = None
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024
    # Channels of the mask head's four 3x3 convolutions and its deconvolution
    # (Matterport: 256; the COCO file needs 256). The mask head is most of a
    # training step at small image sizes, so tiny test configs shrink it.
    MASK_HEAD_CHANNELS = 256
    TOP_DOWN_PYRAMID_SIZE = 256

    NUM_CLASSES = 1  # Override in sub-classes (background counts as one)

    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]
    RPN_ANCHOR_STRIDE = 1
    RPN_NMS_THRESHOLD = 0.7
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256
    PRE_NMS_LIMIT = 6000
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000

    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)

    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    IMAGE_MIN_SCALE = 0
    IMAGE_CHANNEL_COUNT = 3
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])

    TRAIN_ROIS_PER_IMAGE = 200
    ROI_POSITIVE_RATIO = 0.33
    POOL_SIZE = 7
    MASK_POOL_SIZE = 14
    MASK_SHAPE = [28, 28]
    MAX_GT_INSTANCES = 100

    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])

    DETECTION_MAX_INSTANCES = 100
    DETECTION_MIN_CONFIDENCE = 0.7
    DETECTION_NMS_THRESHOLD = 0.3

    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9
    WEIGHT_DECAY = 0.0001
    LOSS_WEIGHTS = {
        "rpn_class_loss": 1.,
        "rpn_bbox_loss": 1.,
        "mrcnn_class_loss": 1.,
        "mrcnn_bbox_loss": 1.,
        "mrcnn_mask_loss": 1.,
    }
    USE_RPN_ROIS = True
    TRAIN_BN = False
    GRADIENT_CLIP_NORM = 5.0

    # Extensions (not in Matterport):
    # parallel loader threads for training (mrcnn.data.DataGenerator).
    WORKERS = 2
    # Keras fit() verbosity in train(): "auto", 0 (silent), 1 (bar) or 2 (a line per epoch).
    VERBOSE = "auto"
    # Whether the backbone started from pretrained weights (coco / imagenet);
    # training sets it and a run's config.json keeps it, so a resumed run knows
    # whether it trains from scratch (mrcnn.schedule).
    PRETRAINED = False
    # batch-norm moving-average momentum (Keras default 0.99). Training from
    # scratch for a few hundred steps wants 0.9 so the inference statistics
    # catch up with the weights.
    BATCH_NORM_MOMENTUM = 0.99
    # "sgd" (Matterport: SGD with LEARNING_MOMENTUM) or "adam" (Adam with
    # beta_1 = LEARNING_MOMENTUM), which converges much faster from scratch.
    OPTIMIZER = "sgd"
    # Linear learning-rate warm-up over the first N steps of each train() call
    # (0 = none, as Matterport). From random weights the first full-rate Adam
    # steps can throw the RPN box outputs far off; Detectron warms up for the
    # same reason.
    LEARNING_RATE_WARMUP = 0
    # Learning-rate decay within each train() call: "none" (Matterport: constant;
    # lower it yourself between calls) or "cosine" (from LEARNING_RATE down to
    # 1 % of it by the call's last epoch, or by the deadline of a TimeBudget
    # callback when that comes first, so a time-budgeted run ends at a low
    # rate however many steps fit). A resumed call decays over what remains.
    LEARNING_RATE_DECAY = "none"
    # Normalization in the backbone and heads: "batch" (Matterport; needed to
    # load mask_rcnn_coco.h5 / ImageNet weights) or "group" (GroupNorm, 32
    # groups: the same per-image statistics in training and inference, for
    # training from scratch with a batch of 1-2 images, where batch norm's
    # moving averages do not match the batch statistics the heads learned on).
    NORM = "batch"
    # Groups of the classifier head's two normalizations when NORM = "group".
    # They see one 1x1 feature vector per ROI, so a group of C/32 channels is
    # normalized over those few values alone: at 64 channels, pairs, of which
    # only the sign survives (the shapes learning test's class and box losses
    # never fell). 1 normalizes each ROI's vector over all its channels (layer
    # norm) and keeps their relations. 32 is what runs before this field were
    # built with (a saved run without it gets 32 back); LesionConfig uses 1.
    CLASSIFIER_NORM_GROUPS = 32
    # Width of the RPN's shared 3x3 conv (Matterport 512, which the COCO file
    # holds; torchvision uses the FPN depth, 256). It runs on every pyramid
    # level, P2 included, so its width sets much of the RPN's cost
    # (bench/flops.py counts it).
    RPN_CONV_CHANNELS = 512
    # RPN anchor labels: positive at IoU >= RPN_POSITIVE_IOU with a gt box (or
    # the best anchor of a box), negative below RPN_NEGATIVE_IOU (Matterport
    # hard-codes 0.7 / 0.3). With one anchor scale per pyramid level, objects
    # larger than half the image often have no anchor at 0.7 (coarse grid on
    # P5/P6), leaving one positive anchor per image.
    RPN_POSITIVE_IOU = 0.7
    RPN_NEGATIVE_IOU = 0.3
    # Arithmetic precision of the convolutions (mrcnn.precision): "float32"
    # (Matterport), "bfloat16" (mixed: float32 weights and geometry, bfloat16
    # convolutions; 2.5x the float32 conv rate on CPUs with AVX512_BF16, 6x
    # slower where bfloat16 is emulated) or "auto": bfloat16 where the CPU
    # executes it natively (avx512_bf16 / amx_bf16 flags, oneDNN on) or on a GPU, float32
    # elsewhere (mrcnn.runtime). Weights are float32 in every case.
    COMPUTE_DTYPE = "auto"
    # Mask-head probability at or above which a pixel belongs to a detection's
    # mask when it is pasted back at full size (Matterport hard-codes 0.5).
    DETECTION_MASK_THRESHOLD = 0.5
    # Inference: the mask head sees each detection's box grown by this factor
    # about its centre (clipped to the image) and its mask is pasted into that
    # box, so an outline can reach past a box that cut its object. 1.0 =
    # Matterport (the detected box). Training is unchanged.
    DETECTION_MASK_BOX_SCALE = 1.0
    # Inference: when nothing is detected in an image (every ROI scored
    # background, or below DETECTION_MIN_CONFIDENCE), return the most
    # object-like ROI anyway (highest foreground probability, else the best
    # RPN proposal) with its low score (mrcnn.detection.best_roi_detection_graph).
    # For datasets with exactly one object per image (ISIC lesions);
    # False = Matterport (an empty result).
    DETECTION_FALLBACK = False
    # Inference: what makes a detection and its score. "class" (Matterport):
    # the ROI's most likely class, background included, must be an object
    # class, and the score is that class's probability. "foreground": an ROI
    # is an object when 1 - P(background) wins, its class is the most likely
    # object class, its score 1 - P(background), and NMS runs across classes.
    # They differ only with two or more object classes: a lesion ROI with
    # P = [0.4 background, 0.2, 0.2, 0.2 three diagnoses] is a lesion for
    # "foreground" (0.6) and nothing for "class" (README, design notes).
    DETECTION_SCORE = "class"
    # One box regressor and one mask for all classes instead of one per class
    # (Detectron's CLS_AGNOSTIC_BBOX_REG / CLS_AGNOSTIC_MASK). Matterport is per
    # class; with few images split over classes that are the same kind of
    # object (nevus vs melanoma), each per-class regressor and mask sees a third
    # of the data, and the mask used is that of the predicted, possibly wrong, class.
    CLASS_AGNOSTIC_BOXES = False
    CLASS_AGNOSTIC_MASKS = False
    # Image preprocessing before the mean pixel is subtracted, in training and
    # inference alike (mrcnn.images.mold_image): "none" or "shades_of_grey"
    # (colour constancy, p = 6: removes the dermoscope's colour cast).
    PREPROCESS = "none"

    # Fields that define the architecture and preprocessing of a trained model:
    # a checkpoint must be rebuilt with the same values to give the same
    # results (mrcnn.runs rebuilds a saved run's config from these). NAME keeps
    # a resumed run in its folder. A subclass adds its own (LesionConfig: none
    # beyond the class scheme, which sets NUM_CLASSES).
    ARCHITECTURE_FIELDS = frozenset({
        "NAME", "NUM_CLASSES", "BACKBONE", "IMAGE_MIN_DIM", "IMAGE_MAX_DIM", "IMAGE_RESIZE_MODE",
        "IMAGE_MIN_SCALE", "MEAN_PIXEL", "PREPROCESS", "NORM", "RPN_ANCHOR_SCALES", "RPN_ANCHOR_RATIOS",
        "RPN_ANCHOR_STRIDE", "BACKBONE_STRIDES", "TOP_DOWN_PYRAMID_SIZE", "RPN_CONV_CHANNELS",
        "FPN_CLASSIF_FC_LAYERS_SIZE", "CLASSIFIER_NORM_GROUPS", "MASK_HEAD_CHANNELS", "POOL_SIZE", "MASK_POOL_SIZE", "MASK_SHAPE",
        "RPN_BBOX_STD_DEV", "BBOX_STD_DEV", "POST_NMS_ROIS_INFERENCE", "PRE_NMS_LIMIT", "RPN_NMS_THRESHOLD",
        "DETECTION_MAX_INSTANCES", "DETECTION_MIN_CONFIDENCE", "DETECTION_NMS_THRESHOLD",
        "DETECTION_MASK_THRESHOLD", "CLASS_AGNOSTIC_BOXES", "CLASS_AGNOSTIC_MASKS"})

    def __init__(self, **overrides):
        """Set any upper-case field by keyword (``Config(IMAGE_MAX_DIM=512)``), then derive and validate.

        Subclasses that set class attributes call ``super().__init__()`` as in
        Matterport. Raises ConfigError naming an unknown field.
        """
        self._set_fields(overrides)
        self.BATCH_SIZE = self.IMAGES_PER_GPU * self.GPU_COUNT
        if self.IMAGE_RESIZE_MODE == "crop":
            self.IMAGE_SHAPE = np.array([self.IMAGE_MIN_DIM, self.IMAGE_MIN_DIM,
                                         self.IMAGE_CHANNEL_COUNT])
        else:
            self.IMAGE_SHAPE = np.array([self.IMAGE_MAX_DIM, self.IMAGE_MAX_DIM,
                                         self.IMAGE_CHANNEL_COUNT])
        # image_id(1) + original shape(3) + image shape(3) + window(4) + scale(1) + active class ids
        self.IMAGE_META_SIZE = 1 + 3 + 3 + 4 + 1 + self.NUM_CLASSES
        self.validate()

    def validate(self):
        """Raise ConfigError naming the field when a value cannot work."""
        def fail(field, message):
            raise ConfigError(f"Config.{field}: {message}")

        for field, allowed in CHOICES.items():
            value = getattr(self, field)
            if (value.lower() if field == "OPTIMIZER" and isinstance(value, str) else value) not in allowed:
                fail(field, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        if not isinstance(self.NUM_CLASSES, int) or self.NUM_CLASSES < 1:
            fail("NUM_CLASSES", f"must be an int >= 1 (background included), got {self.NUM_CLASSES!r}")
        if self.IMAGES_PER_GPU < 1 or self.GPU_COUNT < 1:
            fail("IMAGES_PER_GPU", "IMAGES_PER_GPU and GPU_COUNT must be >= 1")
        if self.IMAGE_RESIZE_MODE in ("square", "pad64", "crop"):
            dim = self.IMAGE_MIN_DIM if self.IMAGE_RESIZE_MODE == "crop" else self.IMAGE_MAX_DIM
            if dim % 64:
                field = "IMAGE_MIN_DIM" if self.IMAGE_RESIZE_MODE == "crop" else "IMAGE_MAX_DIM"
                fail(field, f"must be divisible by 64 (2**6, the FPN's deepest stride), got {dim}; "
                            f"try {max(64, int(round(dim / 64)) * 64)}")
        if self.IMAGE_MIN_DIM > self.IMAGE_MAX_DIM and self.IMAGE_RESIZE_MODE != "crop":
            fail("IMAGE_MIN_DIM", f"({self.IMAGE_MIN_DIM}) must not exceed IMAGE_MAX_DIM ({self.IMAGE_MAX_DIM})")
        if not isinstance(self.BACKBONE, str) and not callable(self.BACKBONE):
            fail("BACKBONE", "must be 'resnet50', 'resnet101' or a callable")
        if isinstance(self.BACKBONE, str) and self.BACKBONE not in ("resnet50", "resnet101"):
            fail("BACKBONE", f"unknown backbone {self.BACKBONE!r}; use resnet50 or resnet101")
        if len(self.RPN_ANCHOR_SCALES) != len(self.BACKBONE_STRIDES):
            fail("RPN_ANCHOR_SCALES", f"needs one scale per pyramid level ({len(self.BACKBONE_STRIDES)}), "
                                      f"got {len(self.RPN_ANCHOR_SCALES)}")
        if not isinstance(self.CLASSIFIER_NORM_GROUPS, int) or self.CLASSIFIER_NORM_GROUPS < 1:
            fail("CLASSIFIER_NORM_GROUPS", f"must be an int >= 1 (1: layer norm), got {self.CLASSIFIER_NORM_GROUPS!r}")
        if not isinstance(self.LEARNING_RATE_WARMUP, int) or self.LEARNING_RATE_WARMUP < 0:
            fail("LEARNING_RATE_WARMUP", f"must be an int >= 0 (steps), got {self.LEARNING_RATE_WARMUP!r}")
        if not 1.0 <= self.DETECTION_MASK_BOX_SCALE <= 3.0:
            fail("DETECTION_MASK_BOX_SCALE", f"must be in [1, 3] (1 = the detected box), "
                                             f"got {self.DETECTION_MASK_BOX_SCALE}")
        if not 0 < self.DETECTION_MASK_THRESHOLD < 1:
            fail("DETECTION_MASK_THRESHOLD", f"must be in (0, 1), got {self.DETECTION_MASK_THRESHOLD}")
        if not 0 < self.RPN_NEGATIVE_IOU <= self.RPN_POSITIVE_IOU <= 1:
            fail("RPN_POSITIVE_IOU", "need 0 < RPN_NEGATIVE_IOU <= RPN_POSITIVE_IOU <= 1, got "
                                     f"{self.RPN_NEGATIVE_IOU} and {self.RPN_POSITIVE_IOU}")
        if not 0 < self.ROI_POSITIVE_RATIO <= 1:
            fail("ROI_POSITIVE_RATIO", f"must be in (0, 1], got {self.ROI_POSITIVE_RATIO}")
        if self.TRAIN_ROIS_PER_IMAGE < 1:
            fail("TRAIN_ROIS_PER_IMAGE", "must be >= 1")
        if self.POST_NMS_ROIS_TRAINING < self.TRAIN_ROIS_PER_IMAGE and self.USE_RPN_ROIS:
            log.debug("POST_NMS_ROIS_TRAINING < TRAIN_ROIS_PER_IMAGE: ROI batches will be padded")
        if self.DETECTION_MAX_INSTANCES < 1:
            fail("DETECTION_MAX_INSTANCES", "must be >= 1")
        if not 0 <= self.DETECTION_MIN_CONFIDENCE <= 1:
            fail("DETECTION_MIN_CONFIDENCE", f"must be in [0, 1], got {self.DETECTION_MIN_CONFIDENCE}")
        if len(self.MEAN_PIXEL) != self.IMAGE_CHANNEL_COUNT:
            fail("MEAN_PIXEL", f"needs {self.IMAGE_CHANNEL_COUNT} values, got {len(self.MEAN_PIXEL)}")
        if list(self.MASK_SHAPE) != [2 * self.MASK_POOL_SIZE] * 2:
            fail("MASK_SHAPE", f"must be twice MASK_POOL_SIZE ({self.MASK_POOL_SIZE}) in each dimension, "
                               f"got {list(self.MASK_SHAPE)}")
        unknown_losses = set(self.LOSS_WEIGHTS) - set(Config.LOSS_WEIGHTS)
        if unknown_losses:
            fail("LOSS_WEIGHTS", f"unknown loss names {sorted(unknown_losses)}; "
                                 f"known: {sorted(Config.LOSS_WEIGHTS)}")

    def _set_fields(self, fields):
        """setattr for each {FIELD: value}; ConfigError naming a field the class does not have."""
        for name, value in fields.items():
            if not name.isupper() or not hasattr(type(self), name):
                hint = nearest_fields_hint(name, self.field_names(), "; fields are upper-case attributes "
                                                                     "such as IMAGE_MAX_DIM or LEARNING_RATE")
                raise ConfigError(f"{type(self).__name__}.{name}: unknown field{hint}")
            setattr(self, name, value)

    @classmethod
    def field_names(cls):
        """The upper-case field names of this config class (sorted)."""
        return sorted(name for name in dir(cls) if name.isupper() and not name.startswith("__")
                      and name not in _NOT_FIELDS)

    @classmethod
    def parse_overrides(cls, pairs, reserved=None):
        """``KEY=VALUE`` strings (the CLI's ``--config``) -> {KEY: value}, typed like cls's defaults.

        Values are read as Python literals and never evaluated as code; see
        mrcnn.overrides.parse_overrides for the typing rules. reserved:
        {FIELD: how to set it instead} for fields this way must not set.
        Raises ConfigError naming the field and the nearest field names.
        """
        # Imported here, not at the top: mrcnn.overrides needs ConfigError from this module.
        from .overrides import parse_overrides
        return parse_overrides(cls, pairs, reserved)

    @classmethod
    def from_overrides(cls, pairs, **fields):
        """A config of this class from ``KEY=VALUE`` strings (see parse_overrides) over keyword fields."""
        fields.update(cls.parse_overrides(pairs))
        return cls(**fields)

    @classmethod
    def from_saved(cls, saved, **overrides):
        """This class's config rebuilt from a run's saved dict (its config.json), then overrides.

        Only ARCHITECTURE_FIELDS come from ``saved`` (a field added after the
        run was saved gets Matterport's default, which is what the run was
        built with); everything else is this class's default. Subclasses
        with their own constructor arguments (LesionConfig's class scheme)
        override this.
        """
        fields = cls.fields_from_dict(saved, sorted(cls.ARCHITECTURE_FIELDS)) if saved else {}
        fields.update(overrides)
        return cls(**fields)

    def to_dict(self):
        """All upper-case fields as a dict of plain Python values."""
        out = {}
        for name in dir(self):
            if name.isupper() and not name.startswith("__") and name not in _NOT_FIELDS:
                value = getattr(self, name)
                if callable(value):
                    value = getattr(value, "__name__", repr(value))
                elif isinstance(value, np.ndarray):
                    value = value.tolist()
                elif isinstance(value, tuple):
                    value = list(value)
                out[name] = value
        return out

    @classmethod
    def fields_from_dict(cls, data, names):
        """Values for the fields ``names`` from a to_dict() dict (a run's config.json), typed like cls's.

        JSON stores tuples and arrays as lists: they come back as the type of
        cls's default. A name missing from data (a field added after the dict
        was written) gets Matterport's default (Config's), which is what older
        runs were built with. Names that are no field of cls are left out.
        Returns {name: value}, ready for setattr or a Config subclass's overrides.
        """
        fields = {}
        for name in names:
            if name in data and hasattr(cls, name):
                value, default = data[name], getattr(cls, name)
                if isinstance(default, np.ndarray):
                    value = np.array(value)
                elif isinstance(default, tuple) and isinstance(value, list):
                    value = tuple(value)
                fields[name] = value
            elif name not in data and hasattr(Config, name):
                fields[name] = getattr(Config, name)
        return fields

    def to_json(self):
        """The config as an indented JSON string."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)

    def display(self):
        """Print the configuration, one field per line."""
        print("\nConfigurations:")
        for key, value in sorted(self.to_dict().items()):
            print(f"{key:30} {value}")
        print("\n")
