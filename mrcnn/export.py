"""Export an inference model as a self-contained TensorFlow SavedModel (and TFLite).

``export_saved_model(model, out_dir)`` writes ``out_dir/`` as a SavedModel
whose ``serving_default`` signature is the contract (mrcnn.serving does the
work inside the graph)::

    inputs   images          uint8   [batch, H, W, 3]   any H, W (one size per batch)
             min_confidence  float32 []                  detection score threshold
    outputs  num_detections  int32   [batch]
             boxes           float32 [batch, N, 4]       (y1, x1, y2, x2) original pixels
             class_ids       int32   [batch, N]
             scores          float32 [batch, N]
             probs           float32 [batch, N, NUM_CLASSES]
             masks           uint8   [batch, N, H, W]    0 / 1 at the original size

N = DETECTION_MAX_INSTANCES, padded with zeros, sorted by score. A
SavedModel signature has no default values, so the signature needs
``min_confidence``; the restored function ``loaded.serve(images)`` defaults
it to the run's DETECTION_MIN_CONFIDENCE. Beside it: ``config.json`` (the
run's config), ``class_names.json`` and ``README.txt``. The second-stage
lesion classifier is exported beside it as its own SavedModel
(skinlesion.export_classifier; ``lesions.py --mode export --classifier``
writes it to ``out_dir/classifier/``).
"""
import json
import os

from .runtime import resolve_compute_dtype

README = """Mask R-CNN SavedModel exported by mrcnn.export ({name}, {classes} classes: {class_list}).

Load it with plain TensorFlow (no mrcnn needed):

    import numpy as np, tensorflow as tf
    from PIL import Image
    loaded = tf.saved_model.load("{folder}")
    image = np.asarray(Image.open("lesion.jpg").convert("RGB"))[None]        # uint8 [1, H, W, 3]
    out = loaded.signatures["serving_default"](images=tf.constant(image),
                                               min_confidence=tf.constant({threshold}))
    n = int(out["num_detections"][0])
    boxes, masks = out["boxes"][0, :n], out["masks"][0, :n]                  # pixels; uint8 [n, H, W]
    # or loaded.serve(tf.constant(image)) with min_confidence {threshold} by default

Outputs: num_detections int32 [B]; boxes float32 [B, N, 4] (y1, x1, y2, x2,
original pixels); class_ids int32 [B, N] (index into class_names.json);
scores float32 [B, N]; probs float32 [B, N, {classes}]; masks uint8
[B, N, H, W] (0/1). N = {max_instances}, zero-padded, sorted by score.
{fallback}
Inspect: saved_model_cli show --dir {folder} --tag_set serve --signature_def serving_default
Research software, not a medical device.
"""

FALLBACK_NOTE = {True: "When no detection passes min_confidence, the best one is still returned (its score is "
                       "below the threshold).\n",
                 False: ""}


def check_exportable(model):
    """Raise ValueError naming the setting when ``model`` (a MaskRCNN) cannot be exported as it is.

    It must be an inference model whose graph keeps every scored detection
    (the default; not a graph_min_confidence floor above 0: the threshold is
    a runtime input) and runs in float32 (the export is float32 whatever the
    run trained in).
    """
    if model.mode != "inference":
        raise ValueError("export needs MaskRCNN('inference', ...), not a training model")
    if model._graph_min_confidence not in (None, 0.0):
        raise ValueError(f"export needs a graph that keeps every scored detection: build the MaskRCNN without "
                         f"graph_min_confidence (it is {model._graph_min_confidence}); min_confidence is a "
                         f"runtime input")
    if resolve_compute_dtype(model.config.COMPUTE_DTYPE) != "float32":
        raise ValueError(f"Config.COMPUTE_DTYPE: export is float32; build the model with "
                         f"COMPUTE_DTYPE='float32' (it is {model.config.COMPUTE_DTYPE!r})")


def export_saved_model(model, out_dir, class_names=None, source=None, tflite=False):
    """Write model (a MaskRCNN, see check_exportable) as a SavedModel in out_dir, with its files.

    class_names: names by class id (default: "class_<i>", 0 = background);
    source: where the weights came from (a checkpoint path), for export.json.
    tflite: also out_dir/model.tflite for images of the molded size
    IMAGE_MAX_DIM x IMAGE_MAX_DIM (convert_tflite; RuntimeError when it
    cannot be converted, after the SavedModel is written). Returns the list
    of paths written.
    """
    import tensorflow as tf

    from .serving import ServingModule
    check_exportable(model)
    config = model.config
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(config.NUM_CLASSES)]
    if len(names) != config.NUM_CLASSES:
        raise ValueError(f"class_names: {len(names)} names for NUM_CLASSES={config.NUM_CLASSES}")
    module = ServingModule(model.keras_model, config)
    os.makedirs(out_dir, exist_ok=True)
    # Custom gradients are for training a loaded model; tracing them doubled the save time.
    tf.saved_model.save(module, out_dir, signatures={"serving_default": module.serve},
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    written = [os.path.join(out_dir, "saved_model.pb")]
    config_path = os.path.join(out_dir, "config.json")
    with open(config_path, "w") as f:
        f.write(config.to_json())
    names_path = os.path.join(out_dir, "class_names.json")
    with open(names_path, "w") as f:
        json.dump(names, f, indent=2)
    info = {"source": source, "format": "savedmodel", "signature": "serving_default",
            "default_min_confidence": float(config.DETECTION_MIN_CONFIDENCE),
            "max_instances": int(config.DETECTION_MAX_INSTANCES), "molded_size": int(config.IMAGE_MAX_DIM),
            "fallback": bool(config.DETECTION_FALLBACK and config.NUM_CLASSES > 1)}
    if tflite:
        size = (int(config.IMAGE_MAX_DIM),) * 2
        tflite_path, flex_ops = convert_tflite(module, out_dir, size)
        written.append(tflite_path)
        info["tflite"] = {"file": os.path.basename(tflite_path), "images": [1, size[0], size[1], 3],
                          "flex_ops": flex_ops}
    info_path = os.path.join(out_dir, "export.json")
    with open(info_path, "w") as f:
        json.dump(info, f, indent=2)
    readme_path = os.path.join(out_dir, "README.txt")
    with open(readme_path, "w") as f:
        f.write(README.format(name=config.NAME, classes=config.NUM_CLASSES, class_list=", ".join(names),
                              folder=out_dir, threshold=float(config.DETECTION_MIN_CONFIDENCE),
                              max_instances=config.DETECTION_MAX_INSTANCES,
                              fallback=FALLBACK_NOTE[bool(config.DETECTION_FALLBACK and config.NUM_CLASSES > 1)]))
    return written + [config_path, names_path, info_path, readme_path]


def convert_tflite(module, out_dir, image_size):
    """Convert a ServingModule for one image of image_size (H, W) to out_dir/model.tflite.

    TFLITE_BUILTINS + SELECT_TF_OPS (the .tflite needs the Flex delegate,
    which tf.lite.Interpreter of the full TensorFlow has). The input is uint8
    [1, H, W, 3], min_confidence a float32 scalar; the outputs are those of
    the SavedModel. Returns (the .tflite path, the sorted names of the flex
    ops it needs, e.g. "TensorListReserve" of the graph's map_fn loops).
    Raises RuntimeError naming the op TensorFlow Lite cannot run (neither a
    builtin nor a flex op).
    """
    import re

    import tensorflow as tf
    function = module.function(image_size=tuple(int(v) for v in image_size), batch=1)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    try:
        flat = converter.convert()
    except Exception as err:  # the converter raises ConverterError; its text names the ops
        ops = sorted(set(re.findall(r"Custom ops: ([\w, ]+)", str(err)))) or ["(see the converter's log)"]
        raise RuntimeError(
            f"--format tflite: TensorFlow Lite cannot convert op {', '.join(ops)} of the serving graph "
            f"(neither a TFLITE_BUILTINS op nor a SELECT_TF_OPS flex op); the SavedModel in {out_dir} is "
            f"written and works, use it with TensorFlow or TF Serving") from err
    path = os.path.join(out_dir, "model.tflite")
    with open(path, "wb") as f:
        f.write(flat)
    # Flex ops are stored as custom ops named "Flex<TensorFlow op>".
    flex_ops = sorted({name.decode() for name in re.findall(rb"Flex([A-Z][A-Za-z0-9]+)", flat)})
    return path, flex_ops
