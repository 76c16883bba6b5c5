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
import os

from mrcnn import runs as mrcnn_runs
from mrcnn.config import Config, ConfigError

from . import splits
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


def inference_model_for(config, weights="path", weights_path=None, model_dir="logs"):
    """An inference MaskRCNN of ``config`` holding the weights the CLI's --weights names.

    weights: "path" (one of our checkpoints, loaded by name), "coco" /
    "imagenet" (pretrained, downloaded when a network is there; RuntimeError
    naming the URL offline) or "none" (random weights, for testing the
    pipeline). Its detect() returns every scored detection by default (see load_model).
    """
    from mrcnn.model import MaskRCNN
    # graph_min_confidence=0: the default threshold of this model's detect(); its
    # users (Predictor, the classifier's crops, the report) apply the run's own.
    model = MaskRCNN("inference", config, model_dir, graph_min_confidence=0.0)
    if weights in ("coco", "imagenet"):
        load_pretrained(model, weights)
    elif weights == "none":
        log.warning("--weights none: predicting with random weights (for testing the pipeline only)")
    else:
        model.load_weights(weights_path, by_name=True)
        log.info("weights: %s", weights_path)
    return model


def load_model(run, classes=None, model_dir=None, **overrides):
    """A saved lesion run ready for inference: (MaskRCNN, LesionConfig, checkpoint path).

    run: a checkpoint, a run folder or a logs folder (mrcnn.runs.resolve_checkpoint).
    overrides: Config fields for inference (DETECTION_MIN_CONFIDENCE, ...).
    Its detect() returns every scored detection (min_confidence 0 by
    default); skinlesion.inference applies config.DETECTION_MIN_CONFIDENCE
    afterwards, so the best detection can still be used (flagged
    low_confidence) when none passes it.
    Raises FileNotFoundError naming the path when it holds no checkpoint.
    """
    checkpoint = mrcnn_runs.resolve_checkpoint(run)
    config = lesion_config("inference", classes, mrcnn_runs.run_config_of(checkpoint), overrides)
    model = inference_model_for(config, "path", checkpoint, model_dir or mrcnn_runs.logs_folder_of(checkpoint))
    return model, config, checkpoint


def load_pretrained(model, kind, cache_dir=None):
    """Load "coco" or "imagenet" weights into ``model`` by name (downloaded when a network is there).

    coco: every layer but the class-specific heads (mrcnn.weights.COCO_HEAD_LAYERS).
    The model starts a new run at epoch 0. Returns (weights path, layers loaded).
    Raises RuntimeError naming the URL and how to pass a local file when offline.
    """
    from mrcnn.weights import COCO_HEAD_LAYERS, download_weights
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".keras", "models")
    path = download_weights(kind, cache_dir)
    report = model.load_weights(path, by_name=True, exclude=COCO_HEAD_LAYERS if kind == "coco" else None)
    model.set_log_dir()
    return path, len(report.get("loaded", []))


def augmentation_for(kind, synthetic=False):
    """The albumentations pipeline for --augment "default" / "strong" (None for "none").

    synthetic: the built-in generator, which already draws lesions over its
    own range of sizes (10-50 % of the image) and is scored on that range;
    lesion re-framing is left out there (skinlesion.augment.dermoscopy_augmentation).
    """
    if kind == "none":
        return None
    from .augment import dermoscopy_augmentation
    return dermoscopy_augmentation(strong=(kind == "strong"), reframe=not synthetic)


def train_run(config, train_set, val_set, logs, weights="none", weights_path=None, saved=None,
              epochs_heads=None, epochs_all=None, minutes=None, augment="default", demo=False, on_model=None,
              seed=0):
    """Train a lesion run the way ``lesions.py --mode train`` does; returns the MaskRCNN.

    weights: "none" (from scratch), "coco" / "imagenet" (pretrained, heads
    first), "last" / "path" (continue ``weights_path``; ``saved`` is its run's
    config dict, whose PRETRAINED says whether it began from scratch).
    epochs_heads / epochs_all: stage epochs (default DEFAULT_EPOCHS, the demo
    DEMO_EPOCHS); minutes: wall-clock budget (the demo: DEMO_MINUTES).
    augment: "default", "strong" or "none" (augmentation_for). on_model:
    called as on_model("model", model) once the model exists (so a caller
    can name its run folder after Ctrl-C). Under several workers (TF_CONFIG,
    mrcnn.distribute) ``seed`` orders the image ids each epoch, and a run
    that lost a worker is resumed by the same command. Raises RuntimeError when
    pretrained weights cannot be fetched, ValueError for a bad budget,
    FloatingPointError when the loss diverges.
    """
    from mrcnn import distribute, schedule
    from mrcnn.model import MaskRCNN
    saved = saved or {}
    if distribute.is_chief():  # a worker other than the chief writes nothing under --logs
        os.makedirs(logs, exist_ok=True)
    model = MaskRCNN(mode="training", config=config, model_dir=logs)
    if on_model:
        on_model("model", model)
    if weights in ("coco", "imagenet"):
        path, loaded = load_pretrained(model, weights)
        log.info("loaded %s weights from %s (%d layers)", weights, path, loaded)
    elif weights in ("last", "path"):
        model.load_weights(weights_path, by_name=True)
        log.info("loaded %s (continuing at epoch %d)", weights_path, model.epoch)
    if distribute.in_multi_worker(model.strategy):
        model.shuffle_seed = seed
        distribute.resume_unfinished_run(model)
    default_heads, default_all = DEMO_EPOCHS if demo else DEFAULT_EPOCHS
    epochs_heads = default_heads if epochs_heads is None else epochs_heads
    epochs_all = default_all if epochs_all is None else epochs_all
    if minutes is None and demo and not saved:
        minutes = DEMO_MINUTES
        log.info("demo: training for at most %d epochs or %g minutes, whichever ends first (--minutes to change)",
                 epochs_heads + epochs_all, DEMO_MINUTES)
    from_scratch = weights == "none" or (weights in ("last", "path") and not saved.get("PRETRAINED"))
    stages = schedule.plan_stages(config, epochs_heads, epochs_all, from_scratch, minutes,
                                  start=model.clock() if model.clock and minutes is not None else None)
    synthetic = (getattr(train_set, "summary", None) or {}).get("layout") == "synthetic"
    augmentation = augmentation_for(augment, synthetic=synthetic)
    schedule.run_stages(model, stages, train_set, val_set, augmentation, from_scratch)
    distribute.mark_run(model, "finished")
    distribute.log_weights_digest(model)
    return model


EXPORT_FORMATS = ("savedmodel", "tflite")


def export_run(run, out_dir, fmt="savedmodel", overrides=None):
    """Export a saved lesion run for deployment (mrcnn.export): (paths written, checkpoint).

    run: a checkpoint, a run folder or a logs folder (as load_model). The
    model has load_model's config but loads strictly, in float32 whatever
    the run trained in, its threshold a runtime input (default: the run's
    DETECTION_MIN_CONFIDENCE, or overrides'). fmt: "savedmodel" (out_dir is
    the SavedModel) or "tflite" (also out_dir/model.tflite for one image of
    the molded size, mrcnn.export.convert_tflite). Raises
    FileNotFoundError / ValueError naming the file when the run cannot be loaded.
    """
    from mrcnn import export
    from mrcnn.model import MaskRCNN
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"--format {fmt}: use one of {', '.join(EXPORT_FORMATS)}")
    checkpoint = mrcnn_runs.resolve_checkpoint(run)
    overrides = {**(overrides or {}), "COMPUTE_DTYPE": "float32"}
    try:
        # Strict loading (unlike load_model's by name): an export must hold every trained layer.
        model, _ = MaskRCNN.from_run(checkpoint, LesionConfig, **overrides)
    except FileNotFoundError:
        raise
    except OSError as err:  # h5py: not an HDF5 file (truncated or corrupt)
        raise ValueError(f"{checkpoint}: not a readable weights file ({err}); "
                         "export another epoch of the run or retrain") from err
    written = export.export_saved_model(model, out_dir, model.config.CLASS_NAMES, source=checkpoint,
                                        tflite=fmt == "tflite")
    return written, checkpoint


def load_subset(dataset, subset, scheme, seed=0, split="0.8,0.1,0.1", config=None):
    """A prepared LesionDataset of one subset and its summary, as the CLI's --dataset / --split / --seed.

    dataset: a folder, or None / "synthetic[:N]" for the built-in synthetic
    set (drawn at the config's IMAGE_MAX_DIM). split: "train,val,test"
    fractions as text or a tuple. A val subset of a split with val 0 is
    (None, {"layout": None, "images": 0}). Raises ValueError (DatasetError)
    naming --dataset or --split when they cannot be used.
    """
    from .dataset import LesionDataset
    synthetic = not dataset or str(dataset).startswith("synthetic")
    if not synthetic and not os.path.exists(dataset):
        raise ValueError(f"--dataset {dataset}: no such folder")
    fractions = splits.parse_split(split)
    if subset == "val" and len(fractions) == 3 and fractions[1] == 0 and dataset:
        return None, {"layout": None, "images": 0}
    size = int(config.IMAGE_MAX_DIM) if config is not None else 256
    kwargs = {"size": (size, size)} if synthetic else {}
    loaded = LesionDataset()
    try:
        summary = loaded.load(dataset, subset, classes=scheme, seed=seed, split=fractions, **kwargs)
    except ValueError as err:
        if "split" not in str(err) or str(err).startswith("--split"):
            raise
        raise ValueError(f"--split {split}: {err}") from err
    loaded.prepare()
    log.info("dataset: %s layout, subset %s, %d images %s, %d skipped", summary["layout"], subset,
             summary["images"], summary.get("classes", {}), len(summary.get("skipped", [])))
    return loaded, summary
