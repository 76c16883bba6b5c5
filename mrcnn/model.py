"""MaskRCNN: assembles the graph from the stage modules; train, detect, weights.

Matterport's public API: ``MaskRCNN(mode, config, model_dir)``, ``train``,
``detect``, ``load_weights``, ``find_last``, ``keras_model``; plus
``load_image_gt`` and ``log`` at module level.
"""
import contextlib
import datetime
import json
import logging
import os
import re

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from . import distribute
from . import runs
from . import runtime
from . import training as training_lib
from .config import Config
from .data import DataGenerator, build_rpn_targets, load_image_gt  # noqa: F401  (Matterport API)
from .graph import build_graph
from .runs import find_last_checkpoint  # noqa: F401  (was defined here)
from .training import MaskRCNNTrainer, csv_header_has as _csv_header_has  # noqa: F401
from .transform import transform_of

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


class MaskRCNN:
    """Mask R-CNN in "training" or "inference" mode (Matterport's class and API)."""

    def __init__(self, mode, config, model_dir, graph_min_confidence=None):
        """mode: "training" or "inference"; model_dir: where runs and checkpoints go.

        graph_min_confidence: a score floor built into the inference graph
        (default 0: every scored detection is kept) and detect()'s default
        threshold when given; otherwise detect() thresholds at
        config.DETECTION_MIN_CONFIDENCE (or its min_confidence argument)
        after the graph, which gives the same detections as a graph built
        with that threshold (mrcnn.transform). The config is never changed.
        """
        if mode not in ("training", "inference"):
            raise ValueError(f"mode must be 'training' or 'inference', got {mode!r}")
        self.mode = mode
        self._graph_min_confidence = graph_min_confidence
        self.config = config
        self.model_dir = model_dir
        self.epoch = 0
        self.log_dir = None
        self.checkpoint_path = None
        # Several workers under TF_CONFIG, or GPU_COUNT > 1: a strategy (mrcnn.distribute).
        self.strategy = distribute.training_strategy(config) if mode == "training" else None
        self.clock = distribute.clock_for(self.strategy)  # None: time.monotonic
        self.shuffle_seed = None  # an int: seeded shards of the image ids each epoch, as several workers
        with self.strategy.scope() if self.strategy else contextlib.nullcontext():
            self.keras_model = self.build(mode, config)
        self._predict_fn = None
        self.set_log_dir()

    # ------------------------------------------------------------------ graph
    def build(self, mode, config):
        """Build the functional Keras model of the mode (mrcnn.graph.build_graph). Returns keras.Model."""
        return build_graph(mode, config, self._graph_min_confidence)

    @classmethod
    def from_run(cls, run, config_class=Config, mode="inference", model_dir=None, graph_min_confidence=None,
                 **overrides):
        """The model of a saved run, with its config and weights: (model, checkpoint path).

        run: a checkpoint file, a run folder (its newest epoch) or a logs
        folder (its newest run). config_class: the Config subclass the run
        was trained with (e.g. skinlesion.LesionConfig); its ``from_saved``
        rebuilds the architecture from the run's config.json, then overrides
        apply (e.g. DETECTION_MIN_CONFIDENCE=0.3). mode "inference" (one image
        per batch) or "training" (continues the run: same folder, next epoch).
        The weights load strictly: every layer of the model must be in the file.
        Raises FileNotFoundError / ValueError naming the path when it holds no run.
        """
        checkpoint = runs.resolve_checkpoint(run)
        saved = runs.run_config_of(checkpoint)
        if mode == "inference":
            config = runs.inference_config(config_class, saved, **overrides)
        else:
            config = config_class.from_saved(saved, **overrides)
        model = cls(mode, config, model_dir or runs.logs_folder_of(checkpoint),
                    graph_min_confidence=graph_min_confidence)
        model.load_weights(checkpoint, by_name=False)
        return model, checkpoint

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
        if distribute.in_multi_worker(self.strategy):
            distribute.sync_weights_from_chief(self.strategy, self.keras_model)
        self._predict_fn = None
        self.set_log_dir(filepath)
        return report

    def get_imagenet_weights(self):
        """Path of the ImageNet ResNet-50 weights (downloaded when a network is there)."""
        from .weights import download_weights
        return download_weights("imagenet", self.model_dir)

    def set_log_dir(self, model_path=None):
        """Set log_dir and epoch; continue a run when model_path is one of its checkpoints (timestamp: the chief's)."""
        self.epoch = 0
        now = distribute.agreed_now(self.strategy) if self.clock else datetime.datetime.now()
        name = self.config.NAME.lower()
        parsed = runs.parse_checkpoint_path(model_path, name) if model_path else None
        if parsed:
            self.log_dir, _, self.epoch = parsed
        else:
            self.log_dir = os.path.join(self.model_dir, f"{name}{now:%Y%m%dT%H%M%S}")
        self.checkpoint_path = os.path.join(self.log_dir, runs.checkpoint_name(name))

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
        train_gen, val_gen, sources = distribute.training_inputs(self, train_dataset, val_dataset, augmentation)
        settings = self.runtime_settings()
        if distribute.is_chief():  # the other workers write nothing
            os.makedirs(self.log_dir, exist_ok=True)
            with open(os.path.join(self.log_dir, "config.json"), "w") as f:
                f.write(cfg.to_json())
            with open(os.path.join(self.log_dir, "runtime.json"), "w") as f:
                json.dump(settings, f, indent=2)
            distribute.mark_run(self, "running")
        logger.info("runtime: %s, oneDNN %s (%s), precision %s%s", settings["cpu"],
                    "on" if settings["onednn"] else "off", settings["onednn_source"],
                    settings["compute_dtype"], ", malloc tuned" if settings["malloc_tuned"] else "")
        logger.info("starting at epoch %d, LR=%g, layers=%s; checkpoints in %s",
                    self.epoch, learning_rate, layers, self.log_dir)
        self.set_trainable(regex)
        scope = self.strategy.scope() if self.strategy else contextlib.nullcontext()
        with scope:
            trainer = MaskRCNNTrainer(self.keras_model, cfg)
            rate = training_lib.learning_rate(learning_rate, cfg.LEARNING_RATE_WARMUP, cfg.LEARNING_RATE_DECAY)
            trainer.compile(optimizer=training_lib.make_optimizer(cfg, rate))
            training_lib.build_optimizer(trainer.optimizer, self.keras_model.trainable_variables)
        callbacks, checkpoint, nan_guard, progress = training_lib.fit_callbacks(
            self.keras_model, self.checkpoint_path, self.log_dir, rate,
            (epochs - self.epoch) * cfg.STEPS_PER_EPOCH, custom_callbacks, self.epoch, distribute.is_chief())
        try:
            with distribute.collective_errors(self.strategy):  # a lost worker: RuntimeError saying what to do
                history = trainer.fit(train_gen, initial_epoch=self.epoch, epochs=epochs,
                                      steps_per_epoch=cfg.STEPS_PER_EPOCH, callbacks=callbacks,
                                      validation_data=val_gen,
                                      validation_steps=cfg.VALIDATION_STEPS if val_gen else None,
                                      verbose=cfg.VERBOSE)
        except KeyboardInterrupt:
            epoch_in_progress = max(progress.epoch, 1)
            path = checkpoint.save(epoch_in_progress)
            logger.warning("interrupted during epoch %d: saved %s", epoch_in_progress, path)
            self.epoch = epoch_in_progress
            raise
        finally:
            self.skipped_images = [entry for source in sources for entry in source.skipped]
        if nan_guard.failed_at:
            epoch, step, logs = nan_guard.failed_at
            raise FloatingPointError(
                f"loss became NaN/inf at epoch {epoch}, step {step} ({logs}); lower LEARNING_RATE "
                f"(now {learning_rate}) or GRADIENT_CLIP_NORM, or check the data")
        self.epoch = max(self.epoch, checkpoint.last_epoch_done or self.epoch)
        return history

    # ------------------------------------------------------------- inference
    def mold_inputs(self, images):
        """Resize and normalise images for the model (mrcnn.transform.InferenceTransform.mold).

        images: list of uint8 [H, W, 3]. Returns: molded_images float32
        [N, h, w, 3], image_metas [N, META], windows int [N, 4].
        """
        return transform_of(self).mold(images)

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape, window,
                          probs=None, mask_boxes=None):
        """Detections of one image in original-image pixels with full-size masks (InferenceTransform.unmold_detections).

        detections: [D, 6] normalized boxes; mrcnn_mask: [D, h, w, C];
        probs: [D, C] or None; mask_boxes: [D, 4] the graph's mask_boxes (None:
        grown here by DETECTION_MASK_BOX_SCALE). Returns: boxes int32 [N, 4],
        class_ids [N], scores [N], masks bool [H, W, N], probs [N, C].
        """
        return transform_of(self).unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape,
                                                    window, probs, mask_boxes)

    def get_anchors(self, image_shape):
        """Normalized pyramid anchors for a molded image shape: float32 [A, 4]."""
        return transform_of(self).anchors(image_shape)

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
        transform = transform_of(self)
        molded, metas, windows = transform.mold(images)
        anchors = transform.anchors(molded[0].shape, len(images))
        return self._predict(molded, metas, anchors), molded, metas, windows

    def detect(self, images, verbose=0, min_confidence=None):
        """Detect instances in a list of RGB images (any count; run BATCH_SIZE at a time).

        min_confidence: keep detections scored above it (None: the model's
        default, config.DETECTION_MIN_CONFIDENCE as Matterport, or the
        graph_min_confidence it was built with; 0.0: every scored detection).
        The graph keeps every scored detection and the threshold is applied
        after it (mrcnn.transform says why that equals a graph built with it).
        Returns one dict per image: rois int32 [N, (y1, x1, y2, x2)] in original
        pixels, class_ids int32 [N], scores float [N], masks bool [H, W, N],
        probs float [N, NUM_CLASSES] (the full class softmax of each detection).
        """
        assert self.mode == "inference", "Create model in inference mode."
        transform = transform_of(self)
        results = []
        batch = max(1, self.config.BATCH_SIZE)
        for start in range(0, len(images), batch):
            chunk = [np.asarray(img) for img in images[start:start + batch]]
            if verbose:
                for image in chunk:
                    log("image", image)
            out, molded, metas, windows = self.run_inference(chunk)
            for i, image in enumerate(chunk):
                results.append(transform.unmold({key: value[i] for key, value in out.items()}, image.shape,
                                                molded[i].shape, windows[i], min_confidence))
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
            anchors = transform_of(self).anchors(molded[0].shape, len(images))
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


__all__ = ["MaskRCNN", "load_image_gt", "build_rpn_targets", "log", "DataGenerator"]
