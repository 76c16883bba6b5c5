"""The training schedule: which layers train, at what rate, up to which epoch and until when.

Matterport's recipe is two stages: the heads at LEARNING_RATE (the backbone
keeps its pretrained weights), then all layers at LEARNING_RATE / 10. From
random weights there is nothing to keep, so stage 1 trains all layers; with
the cosine decay from scratch one stage does it all (a second stage at a
tenth of the rate would only start another decay from the end of the first).
A wall-clock budget ends stage 1 at its share of the time (its epochs over
all epochs) and stage 2 at the end; epochs are then caps.
"""
import dataclasses
import logging
import time

from .training import TimeBudget

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Stage:
    """One MaskRCNN.train() call of a schedule."""

    layers: str  # "heads" or "all" (mrcnn.model.LAYER_REGEX)
    learning_rate: float
    epochs: int  # the epoch number training ends at (cumulative, as Matterport)
    deadline: float = None  # time.monotonic() value at which the stage stops, or None
    note: str = ""  # the log line that introduces the stage


def plan_stages(config, epochs_heads, epochs_all, from_scratch, minutes=None, start=None):
    """The stages of a run: a list of Stage.

    config: the run's Config (LEARNING_RATE, LEARNING_RATE_DECAY).
    epochs_heads / epochs_all: epochs of stage 1 and stage 2.
    from_scratch: True when the backbone starts from random weights.
    minutes: wall-clock budget of the whole run from ``start`` (default now),
    or None. Raises ValueError for a budget that is not positive.
    """
    rate, total = config.LEARNING_RATE, epochs_heads + epochs_all
    deadlines = [None, None]
    if minutes is not None:
        if minutes <= 0:
            raise ValueError(f"--minutes {minutes}: must be > 0")
        start = time.monotonic() if start is None else start
        share = epochs_heads / max(1, total)
        deadlines = [start + 60 * minutes * share, start + 60 * minutes]
    budget = f" of --minutes {minutes:g}" if minutes is not None else ""
    if from_scratch and config.LEARNING_RATE_DECAY == "cosine":
        return [Stage("all", rate, total, deadlines[1],
                      f"LEARNING_RATE_DECAY=cosine from scratch: all layers train in one stage up to epoch "
                      f"{total}, LEARNING_RATE={rate:g} decaying to 1 % by the end{budget}")]
    if minutes is not None:
        log.info("--minutes %g: stage 1 until %.1f min, stage 2 until %g min", minutes,
                 minutes * epochs_heads / max(1, total), minutes)
    if from_scratch:
        first = Stage("all", rate, epochs_heads, deadlines[0],
                      f"from scratch: stage 1 (heads only) is skipped, a random backbone has nothing to keep; "
                      f"all layers train from the start, at LEARNING_RATE for {epochs_heads} epochs, then "
                      f"LEARNING_RATE/10 for {epochs_all}")
    else:
        first = Stage("heads", rate, epochs_heads, deadlines[0],
                      f"stage 1: heads at LEARNING_RATE={rate:g} up to epoch {epochs_heads}")
    return [first, Stage("all", rate / 10, total, deadlines[1],
                         f"stage 2: all layers at LEARNING_RATE/10={rate / 10:g} up to epoch {total}")]


def run_stages(model, stages, train_set, val_set, augmentation=None, from_scratch=True):
    """Train ``model`` (MaskRCNN, training mode) through ``stages``; returns the Keras histories.

    Sets config.PRETRAINED (= not from_scratch) so the run's config.json
    records it for a resumed run. A later stage whose deadline has passed is
    skipped with a log line. Deadlines are read on model.clock when the
    model has one (the chief's clock under several workers), else time.monotonic.
    """
    model.config.PRETRAINED = not from_scratch
    clock = getattr(model, "clock", None)
    histories = []
    for index, stage in enumerate(stages):
        if index and stage.deadline is not None and (clock or time.monotonic)() >= stage.deadline:
            log.info("time budget: no time left for stage %d", index + 1)
            break
        log.info("%s", stage.note)
        callbacks = [TimeBudget(stage.deadline, clock=clock)] if stage.deadline is not None else None
        histories.append(model.train(train_set, val_set, stage.learning_rate, stage.epochs, stage.layers,
                                     augmentation=augmentation, custom_callbacks=callbacks))
    return histories
