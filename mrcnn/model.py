"""MaskRCNN: assembles the graph from the stage modules; train, detect, weights.

Matterport's public API: ``MaskRCNN(mode, config, model_dir)``, ``train``,
``detect``, ``load_weights``, ``find_last``, ``keras_model``; plus
``load_image_gt`` and ``log`` at module level.
"""
import datetime
import json
import logging
import os
import re

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from . import anchors as anchors_lib
from . import runtime
from . import training as training_lib
from .backbone import build_backbone
from .boxes import denorm_boxes, norm_boxes, scale_boxes
from .data import DataGenerator, build_rpn_targets, load_image_gt  # noqa: F401  (Matterport API)
from .detection import DetectionBoxes, DetectionLayer, PadDetections
from .heads import build_fpn_mask_graph, fpn_classifier_graph
from .images import compose_image_meta, mold_image, resize_image, unmold_mask
from .precision import Float32Layer, compute_dtype_scope
from .proposals import ProposalLayer
from .rpn import build_rpn_model
from .targets import DetectionTargetLayer
from .training import AtomicCheckpoint, EpochSummary, LearningRateLog, MaskRCNNTrainer, NaNGuard

logger = logging.getLogger(__name__)

LAYER_REGEX = {
    "heads": r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "5+": r"(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "all": ".*",
}


def log(text, array=None):
    """Print a text line and, for an array, its shape, range and dtype (Matterport's helper)."""
    if array is not None:
        array = np.asarray(array)
        text = text.ljust(25)
        if array.size:
            text += f"shape: {str(array.shape):20}  min: {array.min():10.5f}  max: {array.max():10.5f}  {array.dtype}"
        else:
            text += f"shape: {str(array.shape):20}  min: {'':10}  max: {'':10}  {array.dtype}"
    print(text)


class ConstantAnchors(Float32Layer):
    """Broadcast the fixed pyramid anchors of the training image size to the batch.

    Input: any [B, ...] tensor (for the batch size). Output: [B, A, 4] normalized.
    """

    def __init__(self, anchors, **kwargs):
        super().__init__(**kwargs)
        self.anchors = np.asarray(anchors, np.float32)

    def call(self, x):
        anchors = tf.constant(self.anchors)
        return tf.broadcast_to(anchors[None], [tf.shape(x)[0], self.anchors.shape[0], 4])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.anchors.shape[0], 4)


class NormBoxes(Float32Layer):
    """Pixel boxes [B, N, 4] -> normalized boxes for a fixed image shape."""

    def __init__(self, image_shape, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(v) for v in image_shape[:2])

    def call(self, boxes):
        h, w = self.image_shape
        scale = tf.constant([h - 1, w - 1, h - 1, w - 1], tf.float32)
        shift = tf.constant([0., 0., 1., 1.])
        return (tf.cast(boxes, tf.float32) - shift) / scale

    def compute_output_shape(self, input_shape):
        return input_shape


class SliceROIs(Float32Layer):
    """rois [B, N, 4] -> the first `count` rois [B, count, 4]."""

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        self.count = int(count)

    def call(self, rois):
        return rois[:, :self.count]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.count) + tuple(input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config.update(count=self.count)
        return config


class PositiveROIs(Float32Layer):
    """The leading positive ROIs of a sampled batch, for the mask head.

    Inputs: rois [B, N, 4] (positives first, as DetectionTargetLayer orders
    them), target_class_ids [B, N]. Returns rois [B, K, 4] with K the largest
    number of positives among the batch's images, at least 1 and at most
    ``limit`` (the positive budget): a step whose proposals barely touch the
    objects (early training) runs the mask head on a few boxes, not on the
    whole budget of mostly empty slots. Slots past an image's own positives
    are negatives or padding, which the mask loss ignores.
    """

    def __init__(self, limit, **kwargs):
        super().__init__(**kwargs)
        self.limit = int(limit)

    def call(self, inputs):
        rois, target_class_ids = inputs
        positive = tf.cast(target_class_ids[:, :self.limit] > 0, tf.int32)
        count = tf.maximum(tf.reduce_max(tf.reduce_sum(positive, axis=1)), 1)
        return rois[:, :count]

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], None, 4)

    def get_config(self):
        config = super().get_config()
        config.update(limit=self.limit)
        return config


class ConcatLevels(Float32Layer):
    """Concatenate per-level RPN outputs along the anchor axis: list of [B, Ai, k] -> [B, A, k]."""

    def call(self, inputs):
        return tf.concat(inputs, axis=1)

    def compute_output_shape(self, input_shape):
        total = 0
        for shape in input_shape:
            if shape[1] is None:
                total = None
                break
            total += shape[1]
        return (input_shape[0][0], total, input_shape[0][2])


def find_last_checkpoint(model_dir, name=None):
    """Newest mask_rcnn_<name>_NNNN.weights.h5 of the newest <name><timestamp> run under model_dir.

    name: the config NAME; None takes runs of any NAME (the newest timestamp
    wins), so a run trained with another NAME is found without knowing it.
    Temporary files of an interrupted save (.tmp_ prefix) never match.
    Raises FileNotFoundError naming model_dir and what to do when there is none.
    """
    run_pattern = re.compile(rf"^({re.escape(name.lower()) if name else '.+?'})(\d{{8}}T\d{{4,6}})$")
    runs = []
    if os.path.isdir(model_dir):
        for entry in os.listdir(model_dir):
            match = run_pattern.match(entry)
            if match and os.path.isdir(os.path.join(model_dir, entry)):
                runs.append((match.group(2), match.group(1), entry))
    for _, run_name, entry in sorted(runs, reverse=True):
        pattern = re.compile(rf"^mask_rcnn_{re.escape(run_name)}_(\d{{4}})\.weights\.h5$")
        checkpoints = sorted(f for f in os.listdir(os.path.join(model_dir, entry)) if pattern.match(f))
        if checkpoints:
            return os.path.join(model_dir, entry, checkpoints[-1])
    shown = name.lower() if name else "<NAME>"
    raise FileNotFoundError(f"no checkpoint found under {model_dir}"
                            f"{f' for config NAME {shown!r}' if name else ''} "
                            f"(looked for {shown}<timestamp>/mask_rcnn_{shown}_NNNN.weights.h5); "
                            "train first (--mode train) or pass --weights PATH")


class MaskRCNN:
    """Mask R-CNN in "training" or "inference" mode (Matterport's class and API)."""

    def __init__(self, mode, config, model_dir):
        if mode not in ("training", "inference"):
            raise ValueError(f"mode must be 'training' or 'inference', got {mode!r}")
        self.mode = mode
        self.config = config
        self.model_dir = model_dir
        self.epoch = 0
        self.log_dir = None
        self.checkpoint_path = None
        self.strategy = None
        if mode == "training" and config.GPU_COUNT > 1:
            self.strategy = _mirrored_strategy(config.GPU_COUNT)
            with self.strategy.scope():
                self.keras_model = self.build(mode, config)
        else:
            self.keras_model = self.build(mode, config)
        self._predict_fn = None
        self.set_log_dir()

    # ------------------------------------------------------------------ graph
    def build(self, mode, config):
        """Build the functional Keras model of the mode. Returns keras.Model."""
        with compute_dtype_scope(config.COMPUTE_DTYPE):
            return self._build(mode, config)

    def _build(self, mode, config):
        if config.IMAGE_RESIZE_MODE in ("square", "crop") or mode == "training":
            image_shape = tuple(int(v) for v in config.IMAGE_SHAPE)
        else:
            image_shape = (None, None, config.IMAGE_CHANNEL_COUNT)
        h, w = config.IMAGE_SHAPE[:2]
        if mode == "training" and (h / 2 ** 6 != int(h / 2 ** 6) or w / 2 ** 6 != int(w / 2 ** 6)):
            raise ValueError("Config.IMAGE_MAX_DIM: image size must be divisible by 64")

        input_image = keras.Input(shape=image_shape, name="input_image")
        input_image_meta = keras.Input(shape=(config.IMAGE_META_SIZE,), name="input_image_meta")
        rpn_feature_maps, mrcnn_feature_maps = build_backbone(input_image, config)

        anchors_per_location = len(config.RPN_ANCHOR_RATIOS)
        rpn = build_rpn_model(config.RPN_ANCHOR_STRIDE, anchors_per_location, config.TOP_DOWN_PYRAMID_SIZE,
                              config.RPN_CONV_CHANNELS)
        level_outputs = [rpn(p) for p in rpn_feature_maps]
        rpn_class_logits = ConcatLevels(name="rpn_class_logits")([o[0] for o in level_outputs])
        rpn_class = ConcatLevels(name="rpn_class")([o[1] for o in level_outputs])
        rpn_bbox = ConcatLevels(name="rpn_bbox")([o[2] for o in level_outputs])

        if mode == "training":
            anchors = ConstantAnchors(anchors_lib.get_anchors(config, config.IMAGE_SHAPE),
                                      name="anchors")(input_image)
            proposal_count = config.POST_NMS_ROIS_TRAINING
        else:
            input_anchors = keras.Input(shape=(None, 4), name="input_anchors")
            anchors = input_anchors
            proposal_count = config.POST_NMS_ROIS_INFERENCE
        rpn_rois = ProposalLayer(proposal_count, config.RPN_NMS_THRESHOLD, config.PRE_NMS_LIMIT,
                                 config.RPN_BBOX_STD_DEV, name="ROI")([rpn_class, rpn_bbox, anchors])

        if mode == "training":
            input_rpn_match = keras.Input(shape=(None, 1), name="input_rpn_match", dtype="int32")
            input_rpn_bbox = keras.Input(shape=(None, 4), name="input_rpn_bbox")
            input_gt_class_ids = keras.Input(shape=(None,), name="input_gt_class_ids", dtype="int32")
            input_gt_boxes = keras.Input(shape=(None, 4), name="input_gt_boxes")
            mask_shape = tuple(config.MINI_MASK_SHAPE) if config.USE_MINI_MASK else tuple(config.IMAGE_SHAPE[:2])
            input_gt_masks = keras.Input(shape=mask_shape + (None,), name="input_gt_masks")
            gt_boxes = NormBoxes(config.IMAGE_SHAPE, name="norm_gt_boxes")(input_gt_boxes)
            if not config.USE_RPN_ROIS:
                raise NotImplementedError("USE_RPN_ROIS=False (externally supplied ROIs) is not supported")
            rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
                config, name="proposal_targets")([rpn_rois, input_gt_class_ids, gt_boxes, input_gt_masks])
            num_rois = config.TRAIN_ROIS_PER_IMAGE
            mrcnn_class_logits, mrcnn_class, mrcnn_bbox = fpn_classifier_graph(
                rois, mrcnn_feature_maps, num_rois, config)
            # Positive ROIs come first in the sampled batch and there are at most
            # `positives` of them: only those reach the mask loss, so only they go
            # through the mask head (torchvision does the same; Matterport ran all).
            # With group norm (per ROI) only as many slots as the batch's largest
            # positive count; batch norm keeps the whole budget, so its statistics
            # are never taken over one or two crops.
            positives = max(1, int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO))
            if config.NORM == "group":
                positive_rois = PositiveROIs(positives, name="positive_rois")([rois, target_class_ids])
                mrcnn_mask = build_fpn_mask_graph(positive_rois, mrcnn_feature_maps, None, config)
            else:
                positive_rois = SliceROIs(positives, name="positive_rois")(rois)
                mrcnn_mask = build_fpn_mask_graph(positive_rois, mrcnn_feature_maps, positives, config)
            inputs = {"input_image": input_image, "input_image_meta": input_image_meta,
                      "input_rpn_match": input_rpn_match, "input_rpn_bbox": input_rpn_bbox,
                      "input_gt_class_ids": input_gt_class_ids, "input_gt_boxes": input_gt_boxes,
                      "input_gt_masks": input_gt_masks}
            outputs = {"rpn_class_logits": rpn_class_logits, "rpn_class": rpn_class, "rpn_bbox": rpn_bbox,
                       "mrcnn_class_logits": mrcnn_class_logits, "mrcnn_class": mrcnn_class,
                       "mrcnn_bbox": mrcnn_bbox, "mrcnn_mask": mrcnn_mask, "rpn_rois": rpn_rois,
                       "output_rois": rois, "target_class_ids": target_class_ids,
                       "target_bbox": target_bbox, "target_mask": target_mask}
            # rpn_match, rpn_bbox and image_meta feed only the losses (computed in
            # the trainer's train_step from the batch), so they are not graph inputs.
            for key in ("input_image_meta", "input_rpn_match", "input_rpn_bbox"):
                inputs.pop(key)
            return keras.Model(inputs, outputs, name="mask_rcnn")

        num_rois = config.POST_NMS_ROIS_INFERENCE
        mrcnn_class_logits, mrcnn_class, mrcnn_bbox = fpn_classifier_graph(
            rpn_rois, mrcnn_feature_maps, num_rois, config)
        detections, detection_probs = DetectionLayer(config, name="mrcnn_detection")(
            [rpn_rois, mrcnn_class, mrcnn_bbox, input_image_meta])
        detection_boxes = DetectionBoxes(config.DETECTION_MASK_BOX_SCALE, name="detection_boxes")(detections)
        mrcnn_mask = build_fpn_mask_graph(detection_boxes, mrcnn_feature_maps, None, config)
        mrcnn_mask = PadDetections(config.DETECTION_MAX_INSTANCES, name="mrcnn_mask_padded")(mrcnn_mask)
        inputs = {"input_image": input_image, "input_image_meta": input_image_meta,
                  "input_anchors": input_anchors}
        outputs = {"detections": detections, "mrcnn_class": mrcnn_class, "mrcnn_bbox": mrcnn_bbox,
                   "mrcnn_mask": mrcnn_mask, "rpn_rois": rpn_rois, "rpn_class": rpn_class,
                   "rpn_bbox": rpn_bbox, "detection_probs": detection_probs}
        return keras.Model(inputs, outputs, name="mask_rcnn")

    def runtime_settings(self):
        """The machine settings this model runs with (mrcnn.runtime), as written to a run's runtime.json.

        cpu, flags, onednn (and who chose it), malloc_tuned, compute_dtype
        (COMPUTE_DTYPE resolved: "float32" or "bfloat16") and the thread counts.
        """
        settings = runtime.describe()
        settings["compute_dtype"] = runtime.resolve_compute_dtype(self.config.COMPUTE_DTYPE)
        settings["compute_dtype_config"] = self.config.COMPUTE_DTYPE
        settings["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
        settings["inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads() or os.cpu_count()
        return settings

    # --------------------------------------------------------------- weights
    def find_last(self):
        """Path of the newest checkpoint of the newest run of this config under model_dir.

        Raises FileNotFoundError naming model_dir when there is none.
        """
        return find_last_checkpoint(self.model_dir, self.config.NAME)

    def load_weights(self, filepath, by_name=False, exclude=None):
        """Load weights from our .weights.h5 or a Keras-2 HDF5 file (e.g. mask_rcnn_coco.h5).

        by_name: True matches layers by name and loads those the file has
        (across architectures, or COCO weights into a model with other heads);
        False (Matterport's default) is strict: every layer of this model that
        has weights must be in the file, by name, with its shapes, else
        ValueError and nothing is assigned. A training checkpoint loads
        strictly into an inference model of the same config (same layers).
        exclude: layer names to skip (e.g. the heads when NUM_CLASSES differs;
        needs by_name=True).
        Loading one of our checkpoints also sets the epoch counter and log dir
        so training continues where it stopped.
        """
        from .weights import load_weights_by_name
        if not os.path.exists(filepath):
            raise FileNotFoundError(f"weights file not found: {filepath}")
        report = load_weights_by_name(self.keras_model, filepath, exclude=exclude, by_name=by_name)
        self._predict_fn = None
        self.set_log_dir(filepath)
        return report

    def get_imagenet_weights(self):
        """Path of the ImageNet ResNet-50 weights (downloaded when a network is there)."""
        from .weights import download_weights
        return download_weights("imagenet", self.model_dir)

    def set_log_dir(self, model_path=None):
        """Set log_dir and epoch; continue a run when model_path is one of its checkpoints."""
        self.epoch = 0
        now = datetime.datetime.now()
        name = self.config.NAME.lower()
        if model_path:
            pattern = rf".*[/\\]({re.escape(name)}\d{{8}}T\d{{4,6}})[/\\]mask_rcnn_{re.escape(name)}_(\d{{4}})\.weights\.h5$"
            match = re.match(pattern, os.path.abspath(model_path))
            if match:
                now = datetime.datetime.strptime(match.group(1)[len(name):][:13], "%Y%m%dT%H%M")
                self.epoch = int(match.group(2))
                self.log_dir = os.path.dirname(os.path.abspath(model_path))
                self.checkpoint_path = os.path.join(self.log_dir, f"mask_rcnn_{name}_{{epoch:04d}}.weights.h5")
                return
        self.log_dir = os.path.join(self.model_dir, f"{name}{now:%Y%m%dT%H%M%S}")
        self.checkpoint_path = os.path.join(self.log_dir, f"mask_rcnn_{name}_{{epoch:04d}}.weights.h5")

    # -------------------------------------------------------------- training
    def set_trainable(self, layer_regex, verbose=0):
        """Make layers whose name fully matches layer_regex trainable, freeze the rest.

        Batch-norm layers stay frozen (inference statistics) when TRAIN_BN is False.
        """
        for layer in self.keras_model.layers:
            if isinstance(layer, keras.Model):
                trainable = bool(re.fullmatch(layer_regex, layer.name))
                layer.trainable = True
                for inner in layer.layers:
                    inner.trainable = trainable or bool(re.fullmatch(layer_regex, inner.name))
                continue
            if not layer.weights:
                continue
            trainable = bool(re.fullmatch(layer_regex, layer.name))
            if isinstance(layer, layers.BatchNormalization) and not self.config.TRAIN_BN:
                trainable = False
            layer.trainable = trainable
            if verbose:
                logger.info("%s %s", "TRAIN " if trainable else "frozen", layer.name)

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers, augmentation=None,
              custom_callbacks=None, no_augmentation_sources=None):
        """Train up to epoch number ``epochs`` (cumulative across calls, as Matterport).

        layers: "heads", "3+", "4+", "5+", "all" or a regex of layer names.
        augmentation: an albumentations transform applied to image and masks together.
        Checkpoints go to log_dir as mask_rcnn_<name>_<epoch:04d>.weights.h5.
        Ctrl-C saves a checkpoint of the epoch in progress, then re-raises.
        A NaN loss stops training with FloatingPointError naming the epoch and step.
        Returns the Keras History of this call.
        """
        assert self.mode == "training", "Create model in training mode."
        regex = LAYER_REGEX.get(layers, layers)
        if epochs <= self.epoch:
            logger.info("already at epoch %d >= %d: nothing to train", self.epoch, epochs)
            return None
        cfg = self.config
        train_gen = DataGenerator(train_dataset, cfg, shuffle=True, augmentation=augmentation,
                                  steps=cfg.STEPS_PER_EPOCH)
        val_gen = None
        if val_dataset is not None and len(val_dataset.image_ids) and cfg.VALIDATION_STEPS:
            val_gen = DataGenerator(val_dataset, cfg, shuffle=True, steps=cfg.VALIDATION_STEPS)
        os.makedirs(self.log_dir, exist_ok=True)
        with open(os.path.join(self.log_dir, "config.json"), "w") as f:
            f.write(cfg.to_json())
        settings = self.runtime_settings()
        with open(os.path.join(self.log_dir, "runtime.json"), "w") as f:
            json.dump(settings, f, indent=2)
        logger.info("runtime: %s, oneDNN %s (%s), precision %s%s", settings["cpu"],
                    "on" if settings["onednn"] else "off", settings["onednn_source"],
                    settings["compute_dtype"], ", malloc tuned" if settings["malloc_tuned"] else "")
        logger.info("starting at epoch %d, LR=%g, layers=%s; checkpoints in %s",
                    self.epoch, learning_rate, layers, self.log_dir)
        self.set_trainable(regex)
        scope = self.strategy.scope() if self.strategy else _null_scope()
        with scope:
            trainer = MaskRCNNTrainer(self.keras_model, cfg)
            rate = training_lib.learning_rate(learning_rate, cfg.LEARNING_RATE_WARMUP, cfg.LEARNING_RATE_DECAY)
            if str(cfg.OPTIMIZER).lower() == "adam":
                optimizer = keras.optimizers.Adam(learning_rate=rate, beta_1=cfg.LEARNING_MOMENTUM,
                                                  clipnorm=cfg.GRADIENT_CLIP_NORM)
            else:
                optimizer = keras.optimizers.SGD(learning_rate=rate, momentum=cfg.LEARNING_MOMENTUM,
                                                 clipnorm=cfg.GRADIENT_CLIP_NORM)
            trainer.compile(optimizer=optimizer)
        checkpoint = AtomicCheckpoint(self.keras_model, self.checkpoint_path)
        nan_guard = NaNGuard()
        csv_path = os.path.join(self.log_dir, "losses.csv")
        # The learning rate becomes a losses.csv column, except in a file begun
        # without it (a run resumed from an older version keeps its columns).
        rate_log = [LearningRateLog(rate)] if _csv_header_has(csv_path, "learning_rate") else []
        callbacks = rate_log + [
            training_lib.QuietTensorBoard(log_dir=self.log_dir, histogram_freq=0, write_graph=False),
            keras.callbacks.CSVLogger(csv_path, append=True),
            checkpoint, nan_guard, EpochSummary(),
        ] + list(custom_callbacks or [])
        if isinstance(rate, training_lib.CosineDecaySchedule):
            # A TimeBudget among the callbacks ends the run early: decay to its deadline.
            deadlines = [c.deadline for c in callbacks if isinstance(c, training_lib.TimeBudget)]
            # The decay spans this call (from self.epoch to epochs), as each Matterport stage.
            callbacks.append(training_lib.DecayProgress(
                rate, (epochs - self.epoch) * cfg.STEPS_PER_EPOCH, min(deadlines) if deadlines else None))
        epoch_in_progress = self.epoch

        class _Progress(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                nonlocal epoch_in_progress
                epoch_in_progress = epoch + 1

        callbacks.append(_Progress())
        try:
            history = trainer.fit(train_gen, initial_epoch=self.epoch, epochs=epochs,
                                  steps_per_epoch=cfg.STEPS_PER_EPOCH, callbacks=callbacks,
                                  validation_data=val_gen,
                                  validation_steps=cfg.VALIDATION_STEPS if val_gen else None,
                                  verbose=getattr(cfg, "VERBOSE", "auto"))
        except KeyboardInterrupt:
            path = checkpoint.save(max(epoch_in_progress, 1))
            logger.warning("interrupted during epoch %d: saved %s", epoch_in_progress, path)
            self.epoch = max(epoch_in_progress, 1)
            raise
        finally:
            self.skipped_images = train_gen.skipped + (val_gen.skipped if val_gen else [])
        if nan_guard.failed_at:
            epoch, step, logs = nan_guard.failed_at
            raise FloatingPointError(
                f"loss became NaN/inf at epoch {epoch}, step {step} ({logs}); lower LEARNING_RATE "
                f"(now {learning_rate}) or GRADIENT_CLIP_NORM, or check the data")
        self.epoch = max(self.epoch, checkpoint.last_epoch_done or self.epoch)
        return history

    # ------------------------------------------------------------- inference
    def mold_inputs(self, images):
        """Resize and normalise images for the model.

        images: list of uint8 [H, W, 3]. Returns: molded_images float32
        [N, h, w, 3], image_metas [N, META], windows int [N, 4].
        """
        molded_images, image_metas, windows = [], [], []
        for image in images:
            molded, window, scale, _, _ = resize_image(
                image, min_dim=self.config.IMAGE_MIN_DIM, min_scale=self.config.IMAGE_MIN_SCALE,
                max_dim=self.config.IMAGE_MAX_DIM, mode=self.config.IMAGE_RESIZE_MODE)
            image_metas.append(compose_image_meta(0, image.shape, molded.shape, window, scale,
                                                  np.zeros([self.config.NUM_CLASSES], dtype=np.int32)))
            molded_images.append(mold_image(molded, self.config))
            windows.append(window)
        return np.stack(molded_images), np.stack(image_metas), np.array(windows)

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape, window,
                          probs=None):
        """Detections of one image in original-image pixels with full-size masks.

        detections: [D, 6] normalized boxes; mrcnn_mask: [D, h, w, C];
        probs: [D, C] or None. Returns: boxes int32 [N, 4], class_ids [N],
        scores [N], masks bool [H, W, N], probs [N, C].
        """
        zero_ix = np.where(detections[:, 4] == 0)[0]
        count = zero_ix[0] if zero_ix.shape[0] > 0 else detections.shape[0]
        boxes = detections[:count, :4]
        class_ids = detections[:count, 4].astype(np.int32)
        scores = detections[:count, 5]
        masks = mrcnn_mask[np.arange(count), :, :, class_ids]
        det_probs = probs[:count] if probs is not None else np.zeros((count, self.config.NUM_CLASSES))
        # The mask head saw the boxes DetectionBoxes gave it (grown by
        # DETECTION_MASK_BOX_SCALE): its masks are pasted back into those.
        mask_boxes = boxes
        if self.config.DETECTION_MASK_BOX_SCALE != 1.0:
            mask_boxes = scale_boxes(boxes, self.config.DETECTION_MASK_BOX_SCALE)
        window = norm_boxes(np.array(window), image_shape[:2])
        wy1, wx1, wy2, wx2 = window
        shift = np.array([wy1, wx1, wy1, wx1])
        scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])

        def to_original(normalized):  # molded-image normalized boxes -> original-image pixels
            return denorm_boxes(np.divide(normalized - shift, scale), original_image_shape[:2])

        boxes, mask_boxes = to_original(boxes), to_original(mask_boxes)
        keep = np.where((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)[0]
        boxes, mask_boxes, class_ids, scores, masks, det_probs = (
            boxes[keep], mask_boxes[keep], class_ids[keep], scores[keep], masks[keep], det_probs[keep])
        full_masks = [unmold_mask(masks[i], mask_boxes[i], original_image_shape,
                                  self.config.DETECTION_MASK_THRESHOLD) for i in range(len(keep))]
        if full_masks:
            full_masks = np.stack(full_masks, axis=-1)
        else:
            full_masks = np.zeros(tuple(original_image_shape[:2]) + (0,), dtype=bool)
        return boxes, class_ids, scores, full_masks, det_probs

    def get_anchors(self, image_shape):
        """Normalized pyramid anchors for a molded image shape: float32 [A, 4]."""
        return anchors_lib.get_anchors(self.config, image_shape, normalized=True)

    def _predict(self, molded_images, image_metas, anchors):
        """Run the inference graph (compiled once, reused across calls). Returns numpy dict."""
        if self._predict_fn is None:
            model = self.keras_model

            def forward(image, meta, anchor):
                return model({"input_image": image, "input_image_meta": meta, "input_anchors": anchor},
                             training=False)
            self._predict_fn = tf.function(forward, reduce_retracing=True)
        out = self._predict_fn(tf.constant(molded_images, tf.float32), tf.constant(image_metas, tf.float32),
                               tf.constant(anchors, tf.float32))
        return {k: v.numpy() for k, v in out.items()}

    def run_inference(self, images):
        """Mold images and run the inference graph; returns (raw outputs dict, metas, windows)."""
        molded, metas, windows = self.mold_inputs(images)
        anchors = self.get_anchors(molded[0].shape)
        anchors = np.broadcast_to(anchors, (len(images),) + anchors.shape)
        return self._predict(molded, metas, anchors), molded, metas, windows

    def detect(self, images, verbose=0):
        """Detect instances in a list of RGB images (any count; run BATCH_SIZE at a time).

        Returns one dict per image: rois int32 [N, (y1, x1, y2, x2)] in original
        pixels, class_ids int32 [N], scores float [N], masks bool [H, W, N],
        probs float [N, NUM_CLASSES] (the full class softmax of each detection).
        """
        assert self.mode == "inference", "Create model in inference mode."
        results = []
        batch = max(1, self.config.BATCH_SIZE)
        for start in range(0, len(images), batch):
            chunk = [np.asarray(img) for img in images[start:start + batch]]
            if verbose:
                for image in chunk:
                    log("image", image)
            out, molded, metas, windows = self.run_inference(chunk)
            for i, image in enumerate(chunk):
                rois, class_ids, scores, masks, probs = self.unmold_detections(
                    out["detections"][i], out["mrcnn_mask"][i], image.shape, molded[i].shape,
                    windows[i], out["detection_probs"][i])
                results.append({"rois": rois, "class_ids": class_ids, "scores": scores,
                                "masks": masks, "probs": probs})
        return results

    def run_graph(self, images, outputs):
        """Values of named intermediate layers for images (Matterport's inspection helper).

        outputs: list of (label, layer name or output key). Returns {label: array}.
        """
        out, molded, metas, _ = self.run_inference(images)
        result = {label: out[key] for label, key in outputs if key in out}
        layer_outputs = [(label, key) for label, key in outputs if key not in out]
        if layer_outputs:
            # One sub-model over every requested layer: the graph runs once more, not once per layer.
            sub = keras.Model(self.keras_model.inputs,
                              [self.keras_model.get_layer(key).output for _, key in layer_outputs])
            anchors = self.get_anchors(molded[0].shape)
            anchors = np.broadcast_to(anchors, (len(images),) + anchors.shape)
            values = sub({"input_image": molded, "input_image_meta": metas, "input_anchors": anchors})
            if len(layer_outputs) == 1:
                values = [values]
            for (label, _), value in zip(layer_outputs, values):
                result[label] = np.asarray(value)
        return result

    def save_config(self, path=None):
        """Write the config as JSON to path (default log_dir/config.json)."""
        path = path or os.path.join(self.log_dir, "config.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(self.config.to_dict(), f, indent=2, default=str)
        return path


def _csv_header_has(path, column):
    """True when the CSV file at path is absent or empty, or its header row names column."""
    if not os.path.exists(path):
        return True
    with open(path) as f:
        header = f.readline().strip()
    return not header or column in header.split(",")


class _null_scope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _mirrored_strategy(count):
    """MirroredStrategy over `count` GPUs, or over logical CPUs when there is no GPU (tests)."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) >= count:
        return tf.distribute.MirroredStrategy([d.name for d in gpus[:count]])
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) >= count:
        logger.warning("GPU_COUNT=%d but only %d GPU(s): mirroring over %d logical CPUs",
                       count, len(gpus), count)
        return tf.distribute.MirroredStrategy([d.name for d in cpus[:count]])
    raise RuntimeError(f"Config.GPU_COUNT={count} but only {len(gpus)} GPU(s) are visible; "
                       "set GPU_COUNT to the number of GPUs")


__all__ = ["MaskRCNN", "load_image_gt", "build_rpn_targets", "log", "DataGenerator"]
