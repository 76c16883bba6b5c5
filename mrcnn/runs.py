"""Runs as a library concept: find a run's checkpoints and rebuild its config.

A run is the folder ``MaskRCNN.train`` writes under ``model_dir``:
``<name><YYYYmmddTHHMMSS>/`` with ``config.json``, ``runtime.json``,
``losses.csv`` and checkpoints ``mask_rcnn_<name>_<epoch:04d>.weights.h5``.
``MaskRCNN.from_run`` rebuilds the model of a run; these are its parts.
"""
import json
import os
import re

from .config import Config

CONFIG_FILE = "config.json"
_RUN_FOLDER = r"(\d{8}T\d{4,6})"


def checkpoint_name(name, epoch=None):
    """``mask_rcnn_<name>_<epoch:04d>.weights.h5`` for config NAME ``name``.

    epoch None gives the template with ``{epoch:04d}`` left in, for the
    checkpoint callback to fill (1-based epochs).
    """
    if epoch is None:
        return f"mask_rcnn_{name.lower()}_{{epoch:04d}}.weights.h5"
    return f"mask_rcnn_{name.lower()}_{int(epoch):04d}.weights.h5"


def checkpoint_pattern(name):
    """Regex of a checkpoint file name of config NAME ``name`` (group 1: the epoch)."""
    return re.compile(rf"^mask_rcnn_{re.escape(name.lower())}_(\d{{4}})\.weights\.h5$")


def run_checkpoints(run_dir, name=None):
    """The checkpoint paths of one run folder, oldest epoch first.

    name: the config NAME (default: read from the folder name). Temporary
    files of an interrupted save (.tmp_ prefix) never match.
    """
    if name is None:
        match = re.match(rf"^(.+?){_RUN_FOLDER}$", os.path.basename(os.path.normpath(run_dir)))
        name = match.group(1) if match else ""
    pattern = checkpoint_pattern(name) if name else re.compile(r"^mask_rcnn_.+_(\d{4})\.weights\.h5$")
    files = sorted(f for f in os.listdir(run_dir) if pattern.match(f)) if os.path.isdir(run_dir) else []
    return [os.path.join(run_dir, f) for f in files]


def find_last_checkpoint(model_dir, name=None):
    """Newest mask_rcnn_<name>_NNNN.weights.h5 of the newest <name><timestamp> run under model_dir.

    name: the config NAME; None takes runs of any NAME (the newest timestamp
    wins), so a run trained with another NAME is found without knowing it.
    Raises FileNotFoundError naming model_dir and what to do when there is none.
    """
    run_pattern = re.compile(rf"^({re.escape(name.lower()) if name else '.+?'}){_RUN_FOLDER}$")
    runs = []
    if os.path.isdir(model_dir):
        for entry in os.listdir(model_dir):
            match = run_pattern.match(entry)
            if match and os.path.isdir(os.path.join(model_dir, entry)):
                runs.append((match.group(2), match.group(1), entry))
    for _, run_name, entry in sorted(runs, reverse=True):
        checkpoints = run_checkpoints(os.path.join(model_dir, entry), run_name)
        if checkpoints:
            return checkpoints[-1]
    shown = name.lower() if name else "<NAME>"
    raise FileNotFoundError(f"no checkpoint found under {model_dir}"
                            f"{f' for config NAME {shown!r}' if name else ''} "
                            f"(looked for {shown}<timestamp>/mask_rcnn_{shown}_NNNN.weights.h5); "
                            "train first (--mode train) or pass --weights PATH")


def parse_checkpoint_path(path, name):
    """(run folder, timestamp text, epoch) of one of our checkpoints of config NAME ``name``, or None.

    The run folder is ``<name><YYYYmmddTHHMM[SS]>``; anything else (a
    pretrained file, a renamed copy) gives None.
    """
    name = name.lower()
    pattern = (rf".*[/\\]({re.escape(name)}{_RUN_FOLDER})[/\\]"
               rf"mask_rcnn_{re.escape(name)}_(\d{{4}})\.weights\.h5$")
    match = re.match(pattern, os.path.abspath(path))
    if not match:
        return None
    return os.path.dirname(os.path.abspath(path)), match.group(2), int(match.group(3))


def resolve_checkpoint(path, name=None):
    """The checkpoint meant by ``path``: a checkpoint file, a run folder (its newest epoch)
    or a logs folder of runs (the newest run's newest epoch, as ``--weights last``).

    Raises FileNotFoundError naming the path and what it should be.
    """
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such file or folder; give a checkpoint "
                                "(mask_rcnn_<name>_NNNN.weights.h5), its run folder or the logs folder")
    checkpoints = run_checkpoints(path, name)
    if checkpoints:
        return checkpoints[-1]
    return find_last_checkpoint(path, name)


def logs_folder_of(checkpoint):
    """The folder that holds the run folder of ``checkpoint`` (the model_dir it was trained under)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(checkpoint)))


def run_config_of(path):
    """The saved config dict of the run that ``path`` (a checkpoint or a run folder) belongs to, or {}.

    {} when there is no config.json (a pretrained file, a copied checkpoint).
    Raises ValueError naming the file when it is not valid JSON.
    """
    if not path:
        return {}
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    config_path = os.path.join(folder, CONFIG_FILE)
    if not os.path.exists(config_path):
        return {}
    try:
        with open(config_path) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path}: not valid JSON ({err}); restore it from the run or "
                         "delete it to load the weights with the default config") from err


def inference_config(config_class=Config, saved=None, **overrides):
    """A run's config for inference: its architecture (from ``saved``), overrides, one image per batch.

    config_class: the Config subclass the run was trained with (its
    ``from_saved`` knows its own fields, e.g. LesionConfig's class scheme).
    """
    overrides.setdefault("IMAGES_PER_GPU", 1)
    overrides["GPU_COUNT"] = 1
    return config_class.from_saved(saved or {}, **overrides)
