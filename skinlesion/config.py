"""LesionConfig: Mask R-CNN defaults sized for dermoscopy (one large lesion per image, CPU-friendly)."""
import logging

from mrcnn.config import Config, ConfigError
from skinlesion import schemes

log = logging.getLogger(__name__)

# Fields the class scheme sets: the CLI's --config must not set them.
_SCHEME_FIELDS = {"NUM_CLASSES": "set the classes with --classes SCHEME instead",
                  "CLASS_SCHEME": "set the classes with --classes SCHEME instead"}


# Dermoscopic structures (isic2018_attributes) are many small instances, and
# an image may hold none: the one-lesion settings above do not fit them.
ATTRIBUTE_DEFAULTS = {"MAX_GT_INSTANCES": 32, "DETECTION_MAX_INSTANCES": 32, "DETECTION_FALLBACK": False,
                      "DETECTION_MIN_CONFIDENCE": 0.5, "TRAIN_ROIS_PER_IMAGE": 64}


class LesionConfig(Config):
    """Config for skin lesions; NUM_CLASSES follows the class scheme.

    ``LesionConfig(classes="isic2017", IMAGE_MAX_DIM=512)`` or
    ``LesionConfig.for_scheme("isic2017", IMAGE_MAX_DIM=512)``. Subclasses may
    set CLASS_SCHEME as a class attribute instead of passing ``classes``.
    """

    NAME = "lesion"
    # Class scheme (skinlesion.schemes.SCHEMES); NUM_CLASSES = 1 + its class count.
    CLASS_SCHEME = "lesion"
    NUM_CLASSES = 1 + len(schemes.SCHEMES["lesion"])

    # Two 256 px images fit CPU memory and still give batch statistics.
    IMAGES_PER_GPU = 2
    # resnet50 is half the cost of resnet101; lesions are large, easy objects.
    BACKBONE = "resnet50"
    # CPU-friendly; dermoscopic lesions stay recognisable at 256 px.
    IMAGE_MIN_DIM = 256
    IMAGE_MAX_DIM = 256
    # Lesions cover about 1-80 % of the image: anchors from 32 px up to the
    # image size, so every such lesion box has an anchor at IoU >= 0.5
    # (tests/test_augment.py checks it; README design notes give the counts).
    RPN_ANCHOR_SCALES = (32, 64, 128, 192, 256)
    # One anchor scale per pyramid level on a coarse P5/P6 grid rarely reaches
    # IoU 0.7 with a large lesion, which left the RPN one positive per image.
    RPN_POSITIVE_IOU = 0.5
    # Lesions are roughly round but can be elongated ellipses.
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]
    # One object per image: few positive anchors exist, so a small sample stays balanced.
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    # A 256 px image has ~16k anchors; the best 1000 hold every plausible lesion box.
    PRE_NMS_LIMIT = 1000
    # One lesion per image needs far fewer proposals than COCO's 2000 / 1000.
    POST_NMS_ROIS_TRAINING = 200
    POST_NMS_ROIS_INFERENCE = 100
    # A third of 32 ROIs positive is plenty for one object and keeps the heads cheap.
    TRAIN_ROIS_PER_IMAGE = 32
    ROI_POSITIVE_RATIO = 0.33
    # ISIC convention: one lesion per image; a little room for satellite lesions.
    MAX_GT_INSTANCES = 4
    DETECTION_MAX_INSTANCES = 4
    # Below 0.5 a second, spurious lesion is usually a hair or bubble.
    DETECTION_MIN_CONFIDENCE = 0.5
    # Every image holds a lesion: when nothing is detected, the most lesion-like
    # ROI is returned anyway (flagged low_confidence by predict); an empty mask
    # scores Jaccard 0, and a model meets images unlike its training set.
    DETECTION_FALLBACK = True
    # A lesion is a lesion whatever its diagnosis: detect by 1 - P(background)
    # (mrcnn Config.DETECTION_SCORE), not by the one diagnosis that beats background.
    DETECTION_SCORE = "foreground"
    # Lesion borders are smooth; 56x56 mini-masks keep them at 256 px input.
    MINI_MASK_SHAPE = (56, 56)
    # Narrow FPN and head layers: few classes, one object, CPU budget.
    TOP_DOWN_PYRAMID_SIZE = 128
    # The RPN's shared conv at 256 channels, not 512: it runs on every pyramid
    # level and was a third of a lesion detect's arithmetic (bench/flops.py);
    # torchvision uses 256 too.
    RPN_CONV_CHANNELS = 256
    FPN_CLASSIF_FC_LAYERS_SIZE = 256
    # Short epochs so checkpoints and validation come often on a CPU.
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 10
    # From scratch, Adam converges in a few hundred steps where SGD had not
    # (README design notes).
    OPTIMIZER = "adam"
    LEARNING_RATE = 0.001
    # Warm up over the first 100 steps: from random weights, full-rate Adam
    # steps can throw the RPN box outputs far off.
    LEARNING_RATE_WARMUP = 100
    # Group norm, not batch norm: from scratch with 2 images per batch the heads
    # learn on batch statistics that the moving averages used at inference do
    # not match (README design notes compare the two). Pretrained (coco /
    # imagenet) weights need NORM = "batch"; skinlesion.runs switches to it.
    NORM = "group"
    # Used only with NORM = "batch" (from scratch, statistics must be learned;
    # 0.9 lets the inference statistics follow the weights).
    TRAIN_BN = True
    BATCH_NORM_MOMENTUM = 0.9
    # One box regressor and one mask head output for all classes: nevus and
    # melanoma are the same kind of object to outline, and per class each
    # would see only its share of a small training set.
    CLASS_AGNOSTIC_BOXES = True
    CLASS_AGNOSTIC_MASKS = True

    def __init__(self, classes=None, **overrides):
        """Set the class scheme and any upper-case field, then derive and validate.

        classes: scheme name (default: the class attribute CLASS_SCHEME).
        overrides: FIELD=value for any existing upper-case Config field.
        Raises ConfigError naming the field for an unknown field or a
        NUM_CLASSES that contradicts the scheme.
        """
        scheme = classes if classes is not None else overrides.pop("CLASS_SCHEME", self.CLASS_SCHEME)
        try:
            schemes.check_scheme_name(scheme)
        except schemes.SchemeError as err:
            raise ConfigError(f"LesionConfig.CLASS_SCHEME: {err}") from err
        wanted = schemes.num_classes(scheme)
        if overrides.get("NUM_CLASSES", wanted) != wanted:
            raise ConfigError(f"LesionConfig.NUM_CLASSES: {overrides['NUM_CLASSES']} contradicts "
                              f"classes={scheme!r}, which has {wanted - 1} classes + background = {wanted}; "
                              f"leave NUM_CLASSES out, it follows the scheme")
        self.CLASS_SCHEME = scheme
        self.NUM_CLASSES = wanted
        self.CLASS_NAMES = ("BG",) + schemes.class_names(scheme)
        if schemes.is_attribute_scheme(scheme):
            overrides = {**ATTRIBUTE_DEFAULTS, **overrides}
        super().__init__(**overrides)

    @classmethod
    def parse_overrides(cls, pairs, reserved=None):
        """Config.parse_overrides with NUM_CLASSES and CLASS_SCHEME reserved for the class scheme."""
        return super().parse_overrides(pairs, reserved if reserved is not None else _SCHEME_FIELDS)

    @classmethod
    def from_saved(cls, saved, classes=None, **overrides):
        """A saved run's LesionConfig: its class scheme (or ``classes``) and architecture, then overrides.

        saved: the run's config.json as a dict. Raises ConfigError when
        ``classes`` contradicts the scheme the run was trained with.
        """
        trained = saved.get("CLASS_SCHEME")
        if trained and classes and classes != trained:
            raise ConfigError(f"LesionConfig.CLASS_SCHEME: the checkpoint was trained with classes "
                              f"{trained!r}, not {classes!r}; leave the classes out or retrain")
        fields = cls.fields_from_dict(saved, sorted(cls.ARCHITECTURE_FIELDS - {"NUM_CLASSES"})) if saved else {}
        fields.update(overrides)
        return cls(classes=classes or trained or cls.CLASS_SCHEME, **fields)

    @classmethod
    def for_scheme(cls, scheme_name, **overrides):
        """A config whose NUM_CLASSES fits ``scheme_name``; overrides as in the constructor."""
        return cls(classes=scheme_name, **overrides)
