"""A multi-worker run as a whole: its state file, resuming it after a lost worker, its weights' digest.

mrcnn.distribute re-exports these names. The chief writes
``<run>/multiworker.json`` ({"status": "running" | "finished", ...}); a run
still "running" when the same command starts again on every worker is
continued from its newest checkpoint (resume_unfinished_run).
"""
import hashlib
import json
import logging
import os

import numpy as np

from . import distribute, runs

log = logging.getLogger("mrcnn.distribute")


RUN_STATE_FILE = "multiworker.json"


def mark_run(model, status):
    """Record a multi-worker run's state ("running" / "finished") in its folder (the chief only; else nothing)."""
    if not distribute.in_multi_worker(model.strategy) or not distribute.is_chief():
        return
    os.makedirs(model.log_dir, exist_ok=True)
    path = os.path.join(model.log_dir, RUN_STATE_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump({"status": status, "workers": distribute.num_workers(), "epoch": model.epoch}, f)
    os.replace(path + ".tmp", path)


def unfinished_run(model_dir, name):
    """The newest checkpoint of the newest multi-worker run under model_dir of config NAME still "running", or None."""
    try:
        checkpoint = runs.find_last_checkpoint(model_dir, name)
    except FileNotFoundError:
        return None
    state_path = os.path.join(os.path.dirname(checkpoint), RUN_STATE_FILE)
    try:
        with open(state_path) as f:
            state = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return checkpoint if state.get("status") == "running" else None


def resume_unfinished_run(model):
    """Continue the chief's unfinished multi-worker run on every worker; returns its epoch, or None.

    The chief looks under model.model_dir for the newest run of the config's
    NAME whose multiworker.json says "running" (a worker was lost), loads its
    newest checkpoint and broadcasts the weights, the run folder and the
    epoch, so all workers go on at the next epoch (--logs need not be shared).
    Nothing happens in a single process.
    """
    from .weights import load_weights_by_name
    if not distribute.in_multi_worker(model.strategy):
        return None
    name = model.config.NAME.lower()
    checkpoint = unfinished_run(model.model_dir, name) if distribute.is_chief() else None
    parsed = runs.parse_checkpoint_path(checkpoint, name) if checkpoint else None
    stamp, epoch = 0.0, 0
    if parsed and len(parsed[1]) == 15:  # YYYYmmddTHHMMSS, as set_log_dir names runs
        stamp, epoch = float(parsed[1].replace("T", "")), parsed[2]
    stamp, epoch = distribute.broadcast_from_chief(model.strategy, [stamp, epoch])
    if not stamp:
        return None
    if distribute.is_chief():
        load_weights_by_name(model.keras_model, checkpoint, by_name=False)
    distribute.sync_weights_from_chief(model.strategy, model.keras_model)
    text = f"{int(stamp):014d}"
    # The chief's checkpoint path names the run folder and epoch (set_log_dir parses it; no file is read).
    model.set_log_dir(os.path.join(model.model_dir, f"{name}{text[:8]}T{text[8:]}",
                                   runs.checkpoint_name(name, epoch)))
    log.info("resuming the unfinished multi-worker run %s at epoch %d (worker %d of %d)",
             model.log_dir, model.epoch + 1, distribute.task_index(), distribute.num_workers())
    return model.epoch


def log_weights_digest(model):
    """Log a SHA-256 of all of model's weights under several workers: equal lines prove the replicas agree."""
    if not distribute.in_multi_worker(model.strategy):
        return None
    digest = hashlib.sha256()
    for variable in model.keras_model.weights:
        digest.update(np.ascontiguousarray(np.asarray(variable.numpy())).tobytes())
    log.info("worker %d of %d: weights sha256 %s", distribute.task_index(), distribute.num_workers(), digest.hexdigest())
    return digest.hexdigest()
