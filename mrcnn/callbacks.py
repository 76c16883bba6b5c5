"""The callbacks of MaskRCNN.train(): checkpoints, loss logs, NaN guard, time budget, rate decay.

``fit_callbacks`` assembles them for one train() call. Every name here is also
importable from mrcnn.training, where these callbacks were first published.
"""
import contextlib
import logging
import math
import os
import time
import warnings

import keras
import numpy as np

from .learning_rates import CosineDecaySchedule

# The logger keeps the name of the module these callbacks were published from,
# so existing log filters on "mrcnn.training" still see their messages.
log = logging.getLogger("mrcnn.training")


class DecayProgress(keras.callbacks.Callback):
    """Advance a CosineDecaySchedule: progress = the larger of the step fraction and the time fraction.

    total_steps: steps of this train() call; deadline: a time.monotonic()
    deadline (a TimeBudget's) or None. With a deadline the rate reaches its
    floor when the time runs out, however many steps fit. clock: the
    function the deadline is read against (default time.monotonic; the
    chief's clock under several workers, mrcnn.distribute.AgreedClock).
    """

    def __init__(self, schedule, total_steps, deadline=None, clock=None):
        super().__init__()
        self.schedule = schedule
        self.total_steps = max(1, int(total_steps))
        self.deadline = deadline
        self.clock = clock
        self.start = None
        self.steps_done = 0

    def now(self):
        """The clock's reading (time.monotonic() unless a clock was given)."""
        return self.clock() if self.clock is not None else time.monotonic()

    def on_train_begin(self, logs=None):
        self.start = self.now()
        self.steps_done = 0
        self.schedule.progress.assign(0.0)

    def fraction(self):
        """Progress in [0, 1] after self.steps_done steps of this call."""
        done = self.steps_done / self.total_steps
        if self.deadline is not None and self.deadline > self.start:
            done = max(done, (self.now() - self.start) / (self.deadline - self.start))
        return min(1.0, done)

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done += 1
        self.schedule.progress.assign(self.fraction())


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
    ``path_template`` holds ``{epoch:04d}`` (1-based epoch number). write:
    False on the workers other than the chief, which only count the epochs.
    """

    def __init__(self, net, path_template, write=True):
        super().__init__()
        self.net = net
        self.path_template = path_template
        self.write = write
        self.last_epoch_done = None

    def save(self, epoch):
        path = self.path_template.format(epoch=epoch)
        if not self.write:
            return path
        directory, name = os.path.split(path)
        tmp = os.path.join(directory, ".tmp_" + name)
        with variables_to_numpy_quietly():
            self.net.save_weights(tmp)
        os.replace(tmp, path)
        return path

    def on_epoch_end(self, epoch, logs=None):
        path = self.save(epoch + 1)
        self.last_epoch_done = epoch + 1
        if self.write:
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
    clock: the function the deadline is read against (default
    time.monotonic; under several workers the chief's, so all stop together).
    """

    def __init__(self, deadline, clock=None):
        super().__init__()
        self.deadline = float(deadline)
        self.clock = clock
        self.stopped_at = None
        self._epoch = 0

    def now(self):
        """The clock's reading (time.monotonic() unless a clock was given)."""
        return self.clock() if self.clock is not None else time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        if self.now() >= self.deadline:
            self.stopped_at = (self._epoch, 0)
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        if self.stopped_at is None and self.now() >= self.deadline:
            self.stopped_at = (self._epoch, batch + 1)
            log.info("time budget reached in epoch %d after step %d: finishing the epoch here",
                     self._epoch, batch + 1)
            self.model.stop_training = True


class EpochInProgress(keras.callbacks.Callback):
    """Remembers the 1-based number of the epoch being trained (for saving it on Ctrl-C)."""

    def __init__(self, epoch=0):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1


def fit_callbacks(net, checkpoint_path, log_dir, rate, total_steps, custom_callbacks=None, start_epoch=0,
                  write=True):
    """The callbacks of one MaskRCNN.train() call: (callbacks, checkpoint, nan_guard, progress).

    losses.csv (with a learning_rate column, except in a file begun without
    it: a run resumed from an older version keeps its columns), TensorBoard,
    atomic checkpoints, the NaN guard, the epoch summary, the caller's own,
    and for a cosine rate the decay progress over ``total_steps`` steps or
    to the earliest TimeBudget deadline among the callbacks (on that
    budget's clock). write: False on a worker other than the chief, which
    writes no file (no losses.csv, TensorBoard or checkpoint).
    """
    checkpoint = AtomicCheckpoint(net, checkpoint_path, write=write)
    nan_guard = NaNGuard()
    progress = EpochInProgress(start_epoch)
    csv_path = os.path.join(log_dir, "losses.csv")
    rate_log = [LearningRateLog(rate)] if not write or csv_header_has(csv_path, "learning_rate") else []
    writers = [QuietTensorBoard(log_dir=log_dir, histogram_freq=0, write_graph=False),
               keras.callbacks.CSVLogger(csv_path, append=True)] if write else []
    callbacks = rate_log + writers + [checkpoint, nan_guard, EpochSummary()] + list(custom_callbacks or [])
    if isinstance(rate, CosineDecaySchedule):
        budgets = sorted((c for c in callbacks if isinstance(c, TimeBudget)), key=lambda c: c.deadline)
        callbacks.append(DecayProgress(rate, total_steps, budgets[0].deadline if budgets else None,
                                       clock=budgets[0].clock if budgets else None))
    return callbacks + [progress], checkpoint, nan_guard, progress


def csv_header_has(path, column):
    """True when the CSV file at path is absent or empty, or its header row names column."""
    if not os.path.exists(path):
        return True
    with open(path) as f:
        header = f.readline().strip()
    return not header or column in header.split(",")
