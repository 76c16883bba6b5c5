"""Learning-rate schedules of MaskRCNN.train(): linear warm-up, then constant or cosine decay.

Also importable from mrcnn.training. A cosine schedule's progress is advanced
by mrcnn.callbacks.DecayProgress.
"""
import math

import keras
import tensorflow as tf


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


def learning_rate(rate, warmup_steps, decay="none"):
    """The optimizer's learning_rate argument.

    decay "none": a float, or a WarmupSchedule when warmup_steps > 0;
    "cosine": a CosineDecaySchedule (advance it with DecayProgress).
    """
    if decay == "cosine":
        return CosineDecaySchedule(rate, warmup_steps)
    return WarmupSchedule(rate, warmup_steps) if warmup_steps else rate
