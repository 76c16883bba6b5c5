"""Lesion runs as a library concept: the config of a command, and a saved run's model for inference.

``lesion_config`` is what ``lesions.py`` builds for each mode (the saved
run's architecture, the demo's settings, the fields pretrained files need,
then ``--config`` overrides); ``load_model`` rebuilds a saved run for
inference exactly as ``lesions.py --mode predict / evaluate`` does, so a
script without the CLI gets the same numbers::

    from skinlesion import runs
    from skinlesion.evaluation import evaluate_model
    model, config, checkpoint = runs.load_model("logs/lesion20261201T134446")
    metrics, per_image = evaluate_model(model, config, dataset, "out/")
"""
import logging

from mrcnn import runs as mrcnn_runs
from mrcnn.config import Config, ConfigError

from .config import LesionConfig

log = logging.getLogger(__name__)

# Fields whose Matterport value a pretrained file needs: batch norm (coco and
# imagenet hold its statistics) and the 512-channel RPN conv (coco).
PRETRAINED_FIELDS = {"coco": ("NORM", "RPN_CONV_CHANNELS"), "imagenet": ("NORM",)}

# The offline demo (training on the built-in synthetic set): 192 px, at most
# DEMO_EPOCHS (stage 1, stage 2) of 100 steps or DEMO_MINUTES of wall clock,
# whichever ends first, the rate decaying (cosine) to the end of either, so a
# slow 2-core machine finishes `make demo` in about 15 minutes.
DEMO_CONFIG = {"IMAGE_MIN_DIM": 192, "IMAGE_MAX_DIM": 192, "RPN_ANCHOR_SCALES": (24, 48, 96, 144, 192),
               "LEARNING_RATE_DECAY": "cosine"}
DEMO_EPOCHS = (6, 2)
DEMO_MINUTES = 10.0
# Epochs (stage 1, stage 2) on a real dataset when none are given.
DEFAULT_EPOCHS = (4, 1)


def lesion_config(mode, classes=None, saved=None, overrides=None, weights=None, demo=False):
    """The LesionConfig of a command.

    mode: "train" or an inference mode ("inference", "predict", ...).
    classes: the class scheme asked for (default: the saved run's, else
    "lesion"); in inference it must match the run's. saved: the run's
    config.json dict ({} for a new run): its ARCHITECTURE_FIELDS come back.
    overrides: {FIELD: value} (``LesionConfig.parse_overrides`` of the
    ``--config`` pairs), applied last. weights: "coco" / "imagenet" switch
    the fields the pretrained file needs unless overridden. demo: the demo's
    settings (a new run on the synthetic set). Inference uses one image per
    batch on one device. Raises ConfigError naming the field or flag.
    """
    saved = dict(saved or {})
    overrides = dict(overrides or {})
    trained = saved.get("CLASS_SCHEME")
    if trained and classes and classes != trained:
        if mode != "train":
            raise ConfigError(f"--classes {classes}: the checkpoint was trained with --classes {trained}; "
                              "leave --classes out or retrain")
        saved.pop("CLASS_SCHEME")
    fields = dict(DEMO_CONFIG) if demo and not saved else {}
    for key in PRETRAINED_FIELDS.get(weights, ()):
        value = getattr(Config, key)
        current = saved.get(key, fields.get(key, getattr(LesionConfig, key)))
        if key not in overrides and current != value:
            log.info("--weights %s: the pretrained file needs %s=%r", weights, key, value)
            fields[key] = value
    fields.update(overrides)
    if mode == "train":
        return LesionConfig.from_saved(saved, classes=classes, **fields)
    return mrcnn_runs.inference_config(LesionConfig, saved, classes=classes, **fields)


def load_model(run, classes=None, model_dir=None, **overrides):
    """A saved lesion run ready for inference: (MaskRCNN, LesionConfig, checkpoint path).

    run: a checkpoint, a run folder or a logs folder (mrcnn.runs.resolve_checkpoint).
    overrides: Config fields for inference (DETECTION_MIN_CONFIDENCE, ...).
    The graph keeps every scored detection; skinlesion.inference applies
    config.DETECTION_MIN_CONFIDENCE afterwards, so the best detection can
    still be used (flagged low_confidence) when none passes it.
    Raises FileNotFoundError naming the path when it holds no checkpoint.
    """
    from mrcnn.model import MaskRCNN
    checkpoint = mrcnn_runs.resolve_checkpoint(run)
    config = lesion_config("inference", classes, mrcnn_runs.run_config_of(checkpoint), overrides)
    model = MaskRCNN("inference", config, model_dir or mrcnn_runs.logs_folder_of(checkpoint),
                     graph_min_confidence=0.0)
    model.load_weights(checkpoint, by_name=True)
    return model, config, checkpoint
