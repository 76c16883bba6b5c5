"""Weight files: load HDF5 weights by layer name, and fetch the public pretrained files.

Two on-disk formats are read:

* Keras 2 HDF5 (``model.save_weights("x.h5")`` under Keras 2, e.g. Matterport's
  ``mask_rcnn_coco.h5``): the root (or a ``model_weights`` group for a
  full-model save) lists its layers in the ``layer_names`` attribute; each
  layer group lists its arrays in ``weight_names`` (``b"conv1/kernel:0"``) and
  holds them at ``<layer group>/<weight name>``. A nested model is one layer
  group whose weight names carry the inner layers' names as prefix.
* Keras 3 ``.weights.h5`` (``keras_model.save_weights``): a tree mirroring the
  model's object graph, ``layers/<auto name>/vars/<index>``; each ``vars``
  group carries the layer's real name in its ``name`` attribute (nested models
  add ``layers/`` levels, wrappers such as TimeDistributed a ``layer/`` child).

Matching is by layer name against the model's layers flattened through nested
models, so a checkpoint of one architecture can seed another (the COCO heads
excluded when the class count differs).
"""
import logging
import os
import tempfile
import urllib.error
import urllib.request

import h5py
import numpy as np

log = logging.getLogger(__name__)

COCO_WEIGHTS_URL = "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"
IMAGENET_WEIGHTS_URL = ("https://github.com/fchollet/deep-learning-models/releases/download/v0.2/"
                        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
WEIGHTS_URLS = {"coco": COCO_WEIGHTS_URL, "imagenet": IMAGENET_WEIGHTS_URL}

# Matterport's class-count-dependent head layers: exclude them when loading COCO
# weights into a model with a different NUM_CLASSES.
COCO_HEAD_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]


# --------------------------------------------------------------------------- model side

def _is_container(layer):
    """True for layers that are themselves models (Functional, Sequential, subclassed Model)."""
    import keras
    return isinstance(layer, keras.Model)


def flatten_layers(keras_model):
    """The model's leaf layers, reached through nested models, by name.

    keras_model: a keras.Model. Returns: (leaves, containers) where leaves is a
    dict {layer name: layer} of non-model layers in model order and containers
    a dict {model name: [leaf names inside it]} for every nested model
    (the outer model included).
    """
    leaves = {}
    containers = {}

    def visit(model):
        names = []
        for layer in model.layers:
            if _is_container(layer):
                names.extend(visit(layer))
                continue
            if layer.name in leaves and leaves[layer.name] is not layer:
                log.warning("Two layers named %r; by-name loading reaches only the first", layer.name)
                continue
            leaves[layer.name] = layer
            names.append(layer.name)
        containers[model.name] = names
        return names

    visit(keras_model)
    return leaves, containers


def _short_name(weight_name):
    """'conv1/kernel:0' or 'mrcnn_class_bn1/batch_normalization/gamma' -> 'kernel' / 'gamma'."""
    name = weight_name.decode("utf8") if isinstance(weight_name, bytes) else str(weight_name)
    return name.rsplit("/", 1)[-1].split(":", 1)[0]


# --------------------------------------------------------------------------- file side

def _decode_list(values):
    """HDF5 attribute (array of bytes or str) -> list[str]."""
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def _read_list_attr(group, name):
    """Read a Keras 2 string-list attribute, joining the name0, name1, ... chunks Keras 2
    writes when the list exceeds HDF5's 64 KB attribute limit. Returns: list[str] ([] if absent)."""
    if name in group.attrs:
        return _decode_list(group.attrs[name])
    values, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        values.extend(_decode_list(group.attrs[f"{name}{chunk}"]))
        chunk += 1
    return values


def _is_keras2_group(group):
    """True if the group holds a Keras 2 weight layout (layer_names attribute, possibly chunked)."""
    return "layer_names" in group.attrs or "layer_names0" in group.attrs


def _read_keras2(group):
    """Arrays of a Keras 2 weight group by layer name.

    group: the h5py group holding ``layer_names``. Returns: dict
    {layer name: [(weight name, np.ndarray), ...]} in file order. Besides each
    stored layer, the inner layers of a stored nested model get their own entry,
    keyed by the prefix of their weight names.
    """
    by_layer = {}
    prefixed = {}
    for layer_name in _read_list_attr(group, "layer_names"):
        layer_group = group[layer_name]
        weights = [(w, np.asarray(layer_group[w])) for w in _read_list_attr(layer_group, "weight_names")]
        by_layer[layer_name] = weights
        for weight_name, value in weights:
            prefix = weight_name.split("/", 1)[0] if "/" in weight_name else layer_name
            if prefix != layer_name:
                prefixed.setdefault(prefix, []).append((weight_name, value))
    for prefix, weights in prefixed.items():
        if prefix not in by_layer:
            by_layer[prefix] = weights
    return by_layer


def _collect_keras3_arrays(group):
    """All arrays owned by one Keras 3 saveable group: its own ``vars/<i>`` in index
    order, then those of its child groups (wrapped layers) in name order.
    Returns: list of (path, np.ndarray)."""
    arrays = []
    if "vars" in group:
        own = group["vars"]
        for key in sorted(own.keys(), key=int):
            arrays.append((own[key].name, np.asarray(own[key])))
    for key in sorted(group.keys()):
        if key != "vars" and isinstance(group[key], h5py.Group):
            arrays.extend(_collect_keras3_arrays(group[key]))
    return arrays


def _read_keras3(root, container_names=()):
    """Arrays of a Keras 3 ``.weights.h5`` file by layer name.

    root: the open h5py.File. container_names: names of the (nested) models of
    the target model, whose groups are descended into even when they are
    subclassed models (children stored under attribute names, no ``layers``).
    Functional / Sequential groups are descended through ``layers``; any other
    group whose ``vars`` carries a name is one layer, owning every array below it.
    Returns: dict {layer name: [(path, np.ndarray), ...]}. Raises KeyError when
    the file stores no layer names (written by a Keras 3 that did not).
    """
    by_layer = {}
    found_names = [False]

    def visit(group, is_root=False):
        vars_group = group.get("vars")
        name = vars_group.attrs.get("name") if vars_group is not None else None
        if name is not None:
            found_names[0] = True
            name = name.decode("utf8") if isinstance(name, bytes) else str(name)
        if "layers" in group and isinstance(group["layers"], h5py.Group):
            for key in sorted(group["layers"].keys()):
                visit(group["layers"][key])
            return
        if is_root or (name is not None and name in container_names):
            for key in sorted(group.keys()):
                if key != "vars" and isinstance(group[key], h5py.Group):
                    visit(group[key])
            return
        if name is None:
            return
        arrays = _collect_keras3_arrays(group)
        if name in by_layer:
            log.debug("Layer name %r appears twice in the file; keeping the first", name)
        elif arrays:
            by_layer[name] = arrays

    visit(root, is_root=True)
    if not found_names[0]:
        raise KeyError("no layer names stored")
    return by_layer


def read_weight_file(path, container_names=()):
    """Read every layer's arrays from a weight file, whatever its format.

    path: a Keras 2 ``.h5`` or Keras 3 ``.weights.h5`` file; container_names:
    nested-model names of the target model (see _read_keras3). Returns:
    (format, {layer name: [(weight name, np.ndarray), ...]}) with format
    "keras2" or "keras3".
    """
    with h5py.File(path, "r") as f:
        group = f
        if not _is_keras2_group(f) and "model_weights" in f:
            group = f["model_weights"]
        if _is_keras2_group(group):
            return "keras2", _read_keras2(group)
        if "vars" in f or any(isinstance(f[key], h5py.Group) and "vars" in f[key] for key in f):
            return "keras3", _read_keras3(f, container_names)
    raise ValueError(f"{path}: not a Keras weight file (no 'layer_names' attribute and no Keras 3 "
                     f"'layers' group)")


# --------------------------------------------------------------------------- matching

def _order_like_model(layer, file_weights):
    """Reorder a layer's file arrays to follow layer.weights when the short names allow it.

    Keras 2 and Keras 3 both list kernel, bias (Conv, Dense) and gamma, beta,
    moving_mean, moving_variance (BatchNormalization) in that order, so the
    order is kept unless the names prove otherwise.
    Returns: list of (weight name, np.ndarray), same length as file_weights.
    """
    model_names = [_short_name(v.path if hasattr(v, "path") else v.name) for v in layer.weights]
    file_names = [_short_name(name) for name, _ in file_weights]
    if (model_names != file_names and len(set(model_names)) == len(model_names)
            and sorted(model_names) == sorted(file_names)):
        by_name = dict(zip(file_names, file_weights))
        return [by_name[name] for name in model_names]
    return file_weights


def _plan_assignments(layer, file_weights, path):
    """Check one layer's file arrays against its variables.

    Returns: list of (variable, np.ndarray) to assign. Raises ValueError naming
    the layer, the weight and both shapes on any count or shape mismatch.
    """
    variables = layer.weights
    if len(variables) != len(file_weights):
        raise ValueError(
            f"{path}: layer {layer.name!r} has {len(variables)} weights in the model but "
            f"{len(file_weights)} in the file ({[n for n, _ in file_weights]}); "
            f"pass exclude=[{layer.name!r}] to skip it")
    plan = []
    for variable, (weight_name, value) in zip(variables, _order_like_model(layer, file_weights)):
        model_shape = tuple(variable.shape)
        if tuple(value.shape) != model_shape:
            raise ValueError(
                f"{path}: shape mismatch in layer {layer.name!r}, weight {weight_name!r}: "
                f"model has {model_shape}, file has {tuple(value.shape)}. If the layer depends on "
                f"the class count, pass exclude=[{layer.name!r}] (e.g. exclude=COCO_HEAD_LAYERS)")
        plan.append((variable, value))
    return plan


def _load_keras3_via_clone(keras_model, path):
    """Fallback for a .weights.h5 without stored layer names: load it into a clone of
    keras_model (same architecture required) and read the clone's arrays by layer name.
    Returns: {layer name: [(weight path, np.ndarray), ...]}."""
    import keras
    try:
        clone = keras.models.clone_model(keras_model)
        clone.load_weights(path)
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"{path}: this .weights.h5 stores no layer names and does not match the "
                         f"model's architecture ({err}); load it with by_name=False into the model "
                         f"that wrote it") from err
    leaves, _ = flatten_layers(clone)
    return {name: [(v.path, np.asarray(v.numpy())) for v in layer.weights]
            for name, layer in leaves.items() if layer.weights}


def load_weights_by_name(keras_model, path, exclude=None, by_name=True):
    """Load HDF5 weights into keras_model, matching layers by name.

    keras_model: keras.Model (nested models are searched too).
    path: Keras 2 ``.h5`` (Matterport) or Keras 3 ``.weights.h5`` file.
    exclude: layer names (leaf or nested-model names) to leave untouched.
    by_name: False loads strictly: layers matched by name, every model layer
        with weights required in the file (else ValueError, nothing assigned);
        exclude needs by_name=True.
    Returns: {"loaded": [layer names], "skipped_excluded": [layer names],
        "missing_in_file": [model layers with weights that the file lacks]}.
    Raises ValueError naming layer, weight and both shapes on a shape mismatch;
    nothing is assigned in that case.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weight file not found: {path}")
    exclude = list(exclude or [])
    leaves, containers = flatten_layers(keras_model)
    with_weights = [name for name, layer in leaves.items() if layer.weights]

    if not by_name:
        if exclude:
            raise ValueError("exclude= needs by_name=True (layers are matched by name to skip them)")
        # Strict loading is by name too (Matterport names every layer, and a
        # training checkpoint must load into the inference graph of the same
        # config), but every model layer with weights must be in the file, and
        # the check runs before anything is assigned.
    try:
        file_format, file_layers = read_weight_file(path, set(containers))
    except KeyError:
        file_format, file_layers = "keras3", _load_keras3_via_clone(keras_model, path)
    log.debug("%s: %s format, %d layers with weights", path, file_format, len(file_layers))

    excluded = set(exclude)
    for name in exclude:
        excluded.update(containers.get(name, []))
    unknown = [name for name in exclude if name not in leaves and name not in containers]
    if unknown:
        log.debug("exclude names not in the model: %s", unknown)

    plan, loaded, skipped, missing = [], [], [], []
    for name in with_weights:
        if name in excluded:
            skipped.append(name)
            continue
        if name not in file_layers:
            missing.append(name)
            continue
        plan.extend(_plan_assignments(leaves[name], file_layers[name], path))
        loaded.append(name)
    if missing and not by_name:
        raise ValueError(f"{path}: {len(missing)} model layers are not in the file ({missing[:5]}...); "
                         f"the file is for another architecture: use by_name=True")
    for variable, value in plan:
        variable.assign(value.astype(variable.dtype))

    ignored = sorted(set(file_layers) - set(leaves))
    if ignored:
        log.debug("%s: %d layers in the file are not in the model: %s", path, len(ignored), ignored)
    if missing:
        log.info("%s: %d model layers with weights are not in the file and keep their values: %s",
                 path, len(missing), missing[:10] + (["..."] if len(missing) > 10 else []))
    log.info("Loaded %d layers from %s (%d excluded)", len(loaded), path, len(skipped))
    return {"loaded": loaded, "skipped_excluded": skipped, "missing_in_file": missing}


# --------------------------------------------------------------------------- downloads

def download_weights(kind, dest_dir, timeout=10, url=None):
    """Return the local path of a public pretrained file, downloading it once.

    kind: "coco" (Matterport mask_rcnn_coco.h5) or "imagenet" (Keras 2 ResNet-50
    notop). dest_dir: cache directory. timeout: seconds for the connection.
    url: another public file to fetch the same way (kind then only names it
    in messages), e.g. a keras.applications backbone for the lesion classifier.
    Returns: path (str) of the cached file. Raises RuntimeError at the first
    network failure, naming the URL and how to use a file fetched elsewhere.
    """
    if url is None and kind not in WEIGHTS_URLS:
        raise ValueError(f"Unknown weights kind {kind!r}; choose one of {sorted(WEIGHTS_URLS)}")
    url = url or WEIGHTS_URLS[kind]
    dest_dir = os.fspath(dest_dir)
    target = os.path.join(dest_dir, url.rsplit("/", 1)[-1])
    if os.path.isfile(target) and os.path.getsize(target) > 0:
        log.debug("Using cached %s weights: %s", kind, target)
        return target
    os.makedirs(dest_dir, exist_ok=True)
    log.info("Downloading %s weights from %s", kind, url)
    fd, partial = tempfile.mkstemp(prefix=os.path.basename(target) + ".", suffix=".part", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        if os.path.getsize(partial) == 0:
            raise OSError("empty response")
        os.replace(partial, target)
    except (OSError, urllib.error.URLError, ValueError) as err:
        if os.path.exists(partial):
            os.remove(partial)
        raise RuntimeError(
            f"Could not download the {kind} weights from {url} ({err}). Without network access, "
            f"download that file on another machine, copy it here and pass it with "
            f"--weights /path/to/{os.path.basename(target)} (or place it at {target})") from err
    log.info("Saved %s weights to %s", kind, target)
    return target
