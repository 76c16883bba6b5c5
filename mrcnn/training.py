"""The training step (losses in a custom train_step, as Keras 3 requires), the optimizer and the strategy.

The training callbacks live in mrcnn.callbacks and the learning-rate
schedules in mrcnn.learning_rates; both are importable from here.
"""
import logging

import keras
import tensorflow as tf

from . import losses as L
from .callbacks import (AtomicCheckpoint, DecayProgress, EpochInProgress, EpochSummary,  # noqa: F401
                        LearningRateLog, NaNGuard, QuietTensorBoard, TimeBudget, csv_header_has,
                        fit_callbacks, variables_to_numpy_quietly)
from .images import image_meta_field
from .learning_rates import CosineDecaySchedule, WarmupSchedule, learning_rate  # noqa: F401

log = logging.getLogger(__name__)

LOSS_NAMES = ["rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss"]


class MaskRCNNTrainer(keras.Model):
    """Wraps the functional training graph and computes the five losses in train_step.

    ``net`` is the functional model built by MaskRCNN in training mode: inputs
    keyed by name (input_image, input_image_meta, input_rpn_match,
    input_rpn_bbox, input_gt_class_ids, input_gt_boxes, input_gt_masks), outputs
    a dict (see MaskRCNN.build). The trainer adds L2 weight decay on the
    trainable weights (not BN gamma/beta) and reports each loss as a metric.
    """

    def __init__(self, net, config, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.config = config
        self.input_keys = list(net.input.keys())
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ["loss"] + LOSS_NAMES}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.net({k: inputs[k] for k in self.input_keys}, training=training)

    def compute_losses(self, inputs, training):
        """Forward pass and losses. Returns (total scalar, {loss name: scalar})."""
        cfg = self.config
        out = self.net({k: inputs[k] for k in self.input_keys}, training=training)
        active_class_ids = image_meta_field(inputs["input_image_meta"], "active_class_ids")
        rois = out["output_rois"]
        valid_rois = tf.reduce_sum(tf.abs(rois), axis=-1) > 0
        parts = {
            "rpn_class_loss": L.rpn_class_loss(inputs["input_rpn_match"], out["rpn_class_logits"]),
            "rpn_bbox_loss": L.rpn_bbox_loss(inputs["input_rpn_bbox"], inputs["input_rpn_match"],
                                             out["rpn_bbox"]),
            "mrcnn_class_loss": L.mrcnn_class_loss(out["target_class_ids"], out["mrcnn_class_logits"],
                                                   active_class_ids, valid_rois),
            "mrcnn_bbox_loss": L.mrcnn_bbox_loss(out["target_bbox"], out["target_class_ids"],
                                                 out["mrcnn_bbox"]),
            "mrcnn_mask_loss": L.mrcnn_mask_loss(out["target_mask"], out["target_class_ids"],
                                                 out["mrcnn_mask"]),
        }
        total = tf.add_n([parts[name] * float(cfg.LOSS_WEIGHTS.get(name, 1.0)) for name in LOSS_NAMES])
        if cfg.WEIGHT_DECAY:
            total += L.weight_decay_loss(self.net.trainable_weights, cfg.WEIGHT_DECAY)
        return total, parts

    def _update(self, total, parts):
        """Update the loss trackers; returns {name: mean so far}, scalars (shape [1] under several workers)."""
        self.trackers["loss"].update_state(total)
        for name in LOSS_NAMES:
            self.trackers[name].update_state(parts[name])
        results = {name: tracker.result() for name, tracker in self.trackers.items()}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras averages a multi-worker step's outputs along axis 0, which a scalar lacks
            # (tensorflow/tensorflow#72388): one value per replica, shape [1], averages to the mean.
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    def train_step(self, data):
        inputs = data[0] if isinstance(data, tuple) else data
        with tf.GradientTape() as tape:
            total, parts = self.compute_losses(inputs, training=True)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = total / tf.cast(replicas, total.dtype)
        variables = self.net.trainable_variables
        grads = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        self.optimizer.apply_gradients(pairs)
        return self._update(total, parts)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' build before the first step, fed one replica's batch under several workers.

        Keras 3 averages the first distributed batch across replicas to build
        with, which fails for dict inputs under MultiWorkerMirroredStrategy
        (keras-team/keras#20329); only the shapes matter, so the local
        replica's values are taken. Any other strategy goes through Keras as is.
        """
        strategy = self.distribute_strategy
        if iterator is not None and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0],
                                                   next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def test_step(self, data):
        inputs = data[0] if isinstance(data, tuple) else data
        total, parts = self.compute_losses(inputs, training=False)
        return self._update(total, parts)


def make_optimizer(config, rate):
    """The optimizer of Config.OPTIMIZER ("sgd": SGD with LEARNING_MOMENTUM, Matterport's;
    "adam": Adam with beta_1 = LEARNING_MOMENTUM), clipped at GRADIENT_CLIP_NORM.

    rate: a float or a keras LearningRateSchedule (mrcnn.training.learning_rate).
    """
    if str(config.OPTIMIZER).lower() == "adam":
        return keras.optimizers.Adam(learning_rate=rate, beta_1=config.LEARNING_MOMENTUM,
                                     clipnorm=config.GRADIENT_CLIP_NORM)
    return keras.optimizers.SGD(learning_rate=rate, momentum=config.LEARNING_MOMENTUM,
                                clipnorm=config.GRADIENT_CLIP_NORM)


def build_optimizer(optimizer, variables):
    """Create the optimizer's slot variables for ``variables`` now, outside any tf.function.

    Keras builds them on the first apply when no strategy is set, i.e. inside
    the traced train step, where every new variable is initialised through a
    tf.cond; building first keeps them out of the trace. Values are the same
    (zeros), so training is unchanged. No-op when already built.
    """
    if not optimizer.built:
        optimizer.build(list(variables))
    return optimizer


def mirrored_strategy(count):
    """MirroredStrategy over `count` GPUs, or over logical CPUs when there is no GPU (tests)."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) >= count:
        return tf.distribute.MirroredStrategy([d.name for d in gpus[:count]])
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) >= count:
        log.warning("GPU_COUNT=%d but only %d GPU(s): mirroring over %d logical CPUs",
                       count, len(gpus), count)
        return tf.distribute.MirroredStrategy([d.name for d in cpus[:count]])
    raise RuntimeError(f"Config.GPU_COUNT={count} but only {len(gpus)} GPU(s) are visible; "
                       "set GPU_COUNT to the number of GPUs")
