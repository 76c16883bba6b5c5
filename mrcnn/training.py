"""The training step (losses in a custom train_step, as Keras 3 requires) and training callbacks."""
import contextlib
import logging
import time
import math
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from . import losses as L

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
        active_class_ids = inputs["input_image_meta"][:, 12:]
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
        self.trackers["loss"].update_state(total)
        for name in LOSS_NAMES:
            self.trackers[name].update_state(parts[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

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

    def test_step(self, data):
        inputs = data[0] if isinstance(data, tuple) else data
        total, parts = self.compute_losses(inputs, training=False)
        return self._update(total, parts)


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate rising linearly from rate/steps to rate over the first ``steps`` steps, then constant.

    step: scalar int (the optimizer's iteration count). Returns: scalar float32.
    """

    def __init__(self, rate, steps):
        self.rate = float(rate)
        self.steps = int(steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        return self.rate * tf.minimum(1.0, (step + 1.0) / float(max(1, self.steps)))

    def get_config(self):
        return {"rate": self.rate, "steps": self.steps}


class CosineDecaySchedule(WarmupSchedule):
    """WarmupSchedule's warm-up, then cosine decay from ``rate`` to ``rate * floor`` as training progresses.

    Progress (0 at the start of a train() call, 1 at its end) is a variable
    that DecayProgress advances each step, so the decay can follow whichever
    ends a run first: the step count or a wall-clock budget.
    warm-up(step) * (floor + (1 - floor) * (1 + cos(pi * progress)) / 2).

    step: scalar int (the optimizer's iteration count). Returns: scalar float32.
    """

    def __init__(self, rate, warmup_steps, floor=0.01):
        super().__init__(rate, warmup_steps)
        self.floor = float(floor)
        self.progress = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="lr_decay_progress")

    def __call__(self, step):
        cosine = 0.5 * (1.0 + tf.cos(math.pi * tf.clip_by_value(self.progress, 0.0, 1.0)))
        return super().__call__(step) * (self.floor + (1.0 - self.floor) * cosine)

    def get_config(self):
        return {**super().get_config(), "floor": self.floor}


class DecayProgress(keras.callbacks.Callback):
    """Advance a CosineDecaySchedule: progress = the larger of the step fraction and the time fraction.

    total_steps: steps of this train() call; deadline: a time.monotonic()
    deadline (a TimeBudget's) or None. With a deadline the rate reaches its
    floor when the time runs out, however many steps fit.
    """

    def __init__(self, schedule, total_steps, deadline=None):
        super().__init__()
        self.schedule = schedule
        self.total_steps = max(1, int(total_steps))
        self.deadline = deadline
        self.start = None
        self.steps_done = 0

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()
        self.steps_done = 0
        self.schedule.progress.assign(0.0)

    def fraction(self):
        """Progress in [0, 1] after self.steps_done steps of this call."""
        done = self.steps_done / self.total_steps
        if self.deadline is not None and self.deadline > self.start:
            done = max(done, (time.monotonic() - self.start) / (self.deadline - self.start))
        return min(1.0, done)

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done += 1
        self.schedule.progress.assign(self.fraction())


def learning_rate(rate, warmup_steps, decay="none"):
    """The optimizer's learning_rate argument.

    decay "none": a float, or a WarmupSchedule when warmup_steps > 0;
    "cosine": a CosineDecaySchedule (advance it with DecayProgress).
    """
    if decay == "cosine":
        return CosineDecaySchedule(rate, warmup_steps)
    return WarmupSchedule(rate, warmup_steps) if warmup_steps else rate


@contextlib.contextmanager
def variables_to_numpy_quietly():
    """Silence NumPy 2's DeprecationWarning when Keras converts TensorFlow variables with np.array().

    Keras 3.12's weight saving (and TensorBoard's learning-rate logging) call
    np.array() on TF variables, whose __array__ takes no ``copy`` argument:
    NumPy 2 warns once per variable, about 400 lines per checkpoint of a
    ResNet-50 Mask R-CNN (5349 of the test suite's warnings). The values are
    right; the warning is about a future NumPy. Only that message is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept a copy keyword",
                                category=DeprecationWarning)
        yield


class QuietTensorBoard(keras.callbacks.TensorBoard):
    """keras' TensorBoard callback without NumPy 2's per-epoch warning (variables_to_numpy_quietly)."""

    def on_epoch_end(self, epoch, logs=None):
        with variables_to_numpy_quietly():
            super().on_epoch_end(epoch, logs)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save the weights at each epoch end, written to a temporary name then renamed.

    A kill in mid-write leaves only the temporary file, which find_last() ignores.
    ``path_template`` holds ``{epoch:04d}`` (1-based epoch number).
    """

    def __init__(self, net, path_template):
        super().__init__()
        self.net = net
        self.path_template = path_template
        self.last_epoch_done = None

    def save(self, epoch):
        path = self.path_template.format(epoch=epoch)
        directory, name = os.path.split(path)
        tmp = os.path.join(directory, ".tmp_" + name)
        with variables_to_numpy_quietly():
            self.net.save_weights(tmp)
        os.replace(tmp, path)
        return path

    def on_epoch_end(self, epoch, logs=None):
        path = self.save(epoch + 1)
        self.last_epoch_done = epoch + 1
        log.info("saved checkpoint %s", path)


class NaNGuard(keras.callbacks.Callback):
    """Stop training when the loss becomes NaN or infinite, remembering where."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.failed_at = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(np.asarray(loss))):
            self.failed_at = (self.epoch + 1, batch + 1, {k: float(np.asarray(v)) for k, v in logs.items()})
            self.model.stop_training = True


class LearningRateLog(keras.callbacks.Callback):
    """Put the learning rate of the epoch's last step in the epoch logs as "learning_rate".

    rate: the optimizer's learning_rate argument (a float or a schedule).
    Must come before CSVLogger / EpochSummary in the callback list (Keras
    passes them one logs dict in order), so losses.csv shows the schedule.
    """

    def __init__(self, rate):
        super().__init__()
        self.rate = rate

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if callable(self.rate):
            last_step = max(0, int(self.model.optimizer.iterations.numpy()) - 1)
            logs["learning_rate"] = float(self.rate(last_step))
        else:
            logs["learning_rate"] = float(self.rate)


class EpochSummary(keras.callbacks.Callback):
    """One log line per epoch with every loss, the steps run and the seconds per training step.

    The step time is the wall clock from the first to the last training step of
    the epoch divided by the steps between them, so the first step's graph
    tracing and the validation pass are left out (``steps_per_second`` keeps
    the last epoch's figure for benchmarks).
    """

    def __init__(self):
        super().__init__()
        self.steps = 0
        self.first_end = None
        self.last_end = None
        self.seconds_per_step = None

    def on_epoch_begin(self, epoch, logs=None):
        self.steps, self.first_end, self.last_end = 0, None, None

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self.steps += 1
        if self.first_end is None:
            self.first_end = now
        self.last_end = now

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = " ".join(f"{k}={float(np.asarray(v)):.4f}" for k, v in sorted(logs.items()))
        timing = ""
        if self.steps > 1:
            self.seconds_per_step = (self.last_end - self.first_end) / (self.steps - 1)
            timing = f" ({self.steps} steps, {self.seconds_per_step:.3f} s/step)"
        log.info("epoch %d%s: %s", epoch + 1, timing, parts)


class TimeBudget(keras.callbacks.Callback):
    """Stop training at a wall-clock deadline (time.monotonic() seconds).

    Checked after every step; the epoch in progress ends early, so its
    checkpoint and logs are still written (Keras calls on_epoch_end), and the
    run can be resumed. ``stopped_at`` is (epoch, step) when it fired.
    """

    def __init__(self, deadline):
        super().__init__()
        self.deadline = float(deadline)
        self.stopped_at = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        if time.monotonic() >= self.deadline:
            self.stopped_at = (self._epoch, 0)
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        if self.stopped_at is None and time.monotonic() >= self.deadline:
            self.stopped_at = (self._epoch, batch + 1)
            log.info("time budget reached in epoch %d after step %d: finishing the epoch here",
                     self._epoch, batch + 1)
            self.model.stop_training = True


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


class EpochInProgress(keras.callbacks.Callback):
    """Remembers the 1-based number of the epoch being trained (for saving it on Ctrl-C)."""

    def __init__(self, epoch=0):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1


def fit_callbacks(net, checkpoint_path, log_dir, rate, total_steps, custom_callbacks=None, start_epoch=0):
    """The callbacks of one MaskRCNN.train() call: (callbacks, checkpoint, nan_guard, progress).

    losses.csv (with a learning_rate column, except in a file begun without
    it: a run resumed from an older version keeps its columns), TensorBoard,
    atomic checkpoints, the NaN guard, the epoch summary, the caller's own,
    and for a cosine rate the decay progress over ``total_steps`` steps or
    to the earliest TimeBudget deadline among the callbacks.
    """
    checkpoint = AtomicCheckpoint(net, checkpoint_path)
    nan_guard = NaNGuard()
    progress = EpochInProgress(start_epoch)
    csv_path = os.path.join(log_dir, "losses.csv")
    rate_log = [LearningRateLog(rate)] if csv_header_has(csv_path, "learning_rate") else []
    callbacks = rate_log + [
        QuietTensorBoard(log_dir=log_dir, histogram_freq=0, write_graph=False),
        keras.callbacks.CSVLogger(csv_path, append=True),
        checkpoint, nan_guard, EpochSummary(),
    ] + list(custom_callbacks or [])
    if isinstance(rate, CosineDecaySchedule):
        deadlines = [c.deadline for c in callbacks if isinstance(c, TimeBudget)]
        callbacks.append(DecayProgress(rate, total_steps, min(deadlines) if deadlines else None))
    return callbacks + [progress], checkpoint, nan_guard, progress


def csv_header_has(path, column):
    """True when the CSV file at path is absent or empty, or its header row names column."""
    if not os.path.exists(path):
        return True
    with open(path) as f:
        header = f.readline().strip()
    return not header or column in header.split(",")


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
