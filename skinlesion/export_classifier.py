"""Export the second-stage classifier of a run as a self-contained TensorFlow SavedModel.

``export_classifier(run, out_dir)`` writes ``out_dir/`` (``lesions.py --mode
export --classifier CLS_RUN`` puts it in ``DIR/classifier/``) whose
``serving_default`` signature is::

    inputs   crops   float32 [batch, S, S, 3]   RGB 0..255, S = IMAGE_SIZE
             masks   float32 [batch, S, S, 1]   0..1, only when MASK_MODE uses the mask
    outputs  probs   float32 [batch, K]         diagnosis, temperature-calibrated
             criterion_<name> float32 [batch, units]   one per criteria output (CRITERIA)

It computes what ClassifierRun.predict does: the model on the crop (and,
with the run's TTA, on its left-right and top-bottom flips: diagnosis
log-probabilities averaged then renormalised, criteria probabilities
averaged), then the run's temperature T applied inside the graph:
probs = softmax(log(p) / T). Beside it: the run's ``config.json``,
``class_names.json``, ``export.json`` and ``README.txt`` (how to make the crop).
"""
import json
import os
import shutil

README = """Lesion classifier SavedModel exported by skinlesion.export_classifier ({classes}).

Input: the square crop around the lesion, as skinlesion.classifier.lesion_crop makes it:
take the lesion mask's bounding box (y1, x1, y2, x2), grow it by CROP_MARGIN = {margin} of its
longer side on each side, make it square about its centre (kept inside the image, padded with
zeros where it cannot be), and resize it to {size} x {size} RGB (float 0..255).{mask_note}
Without a mask, the largest centred square of the image.

    import numpy as np, tensorflow as tf
    loaded = tf.saved_model.load("{folder}")
    out = loaded.signatures["serving_default"](crops=tf.constant(crops, tf.float32){mask_call})
    probs = out["probs"].numpy()            # [batch, {count}], calibrated (temperature {temperature:.4g})

Outputs: probs float32 [B, {count}] over class_names.json{criteria_note}.
Inspect: saved_model_cli show --dir {folder} --tag_set serve --signature_def serving_default
Research software, not a medical device.
"""


def classifier_module(run):
    """A tf.Module whose ``serve`` is the calibrated classifier of a ClassifierRun (see the module docstring).

    run: skinlesion.classifier_train.ClassifierRun. Returns (module, its
    serving tf.function with the input signature).
    """
    import tensorflow as tf

    from skinlesion.classifier_criteria import DIAGNOSIS, key
    from skinlesion.classifier_metrics import EPSILON
    config, model = run.config, run.model
    size = int(config.IMAGE_SIZE)
    uses_mask = config.MASK_MODE != "none"
    names = [key(output) for output in run.outputs]
    temperature = float(run.temperature)
    flips = [lambda a: a] + ([lambda a: a[:, :, ::-1], lambda a: a[:, ::-1]] if config.TTA else [])

    def log_probabilities(p):  # classifier_metrics.log_probabilities, float64 as there
        return tf.math.log(tf.clip_by_value(tf.cast(p, tf.float64), EPSILON, 1.0))

    def serve(crops, masks=None):
        logs, criteria = [], {name: [] for name in names}
        for flip in flips:
            inputs = flip(crops) if not uses_mask else {"image": flip(crops), "mask": flip(masks)}
            out = model(inputs, training=False)
            diagnosis = out[DIAGNOSIS] if isinstance(out, dict) else out
            logs.append(log_probabilities(diagnosis))
            for name in names:
                criteria[name].append(tf.cast(out[name], tf.float64))
        averaged = tf.nn.softmax(tf.reduce_mean(tf.stack(logs), axis=0))
        result = {"probs": tf.cast(tf.nn.softmax(log_probabilities(averaged) / temperature), tf.float32)}
        for name in names:
            result[name] = tf.cast(tf.reduce_mean(tf.stack(criteria[name]), axis=0), tf.float32)
        return result

    module = tf.Module(name="lesion_classifier")
    # Only the variables are tracked (as mrcnn.serving): the Keras layers' tree slows saving.
    module.model_variables = [v.value for v in model.variables]
    signature = [tf.TensorSpec([None, size, size, 3], tf.float32, name="crops")]
    if uses_mask:
        signature.append(tf.TensorSpec([None, size, size, 1], tf.float32, name="masks"))
        function = tf.function(lambda crops, masks: serve(crops, masks), input_signature=signature)
    else:
        function = tf.function(lambda crops: serve(crops), input_signature=signature)
    module.serve = function
    return module, function


def export_classifier(run_path, out_dir):
    """Write the classifier run at run_path (a run folder, a file in it or a logs folder) to out_dir.

    Returns the list of paths written. Raises FileNotFoundError naming the
    path when it holds no classifier run.
    """
    import tensorflow as tf

    from skinlesion.classifier_train import ClassifierRun, find_classifier_run
    run_dir = find_classifier_run(run_path)
    run = ClassifierRun(run_dir)
    module, function = classifier_module(run)
    os.makedirs(out_dir, exist_ok=True)
    tf.saved_model.save(module, out_dir, signatures={"serving_default": function},
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    config = run.config
    written = [os.path.join(out_dir, "saved_model.pb")]
    config_path = os.path.join(out_dir, "config.json")
    shutil.copyfile(os.path.join(run_dir, "config.json"), config_path)
    names_path = os.path.join(out_dir, "class_names.json")
    with open(names_path, "w") as f:
        json.dump(run.class_names, f, indent=2)
    criteria = [{"output": f"criterion_{o.name}", "criterion": o.criterion, "units": o.units,
                 "levels": [str(level) for level in o.levels]} for o in run.outputs]
    info = {"source": os.path.abspath(run_dir), "format": "savedmodel", "signature": "serving_default",
            "image_size": int(config.IMAGE_SIZE), "crop_margin": float(config.CROP_MARGIN),
            "mask_mode": config.MASK_MODE, "temperature": float(run.temperature), "tta": bool(config.TTA),
            "criteria": criteria}
    info_path = os.path.join(out_dir, "export.json")
    with open(info_path, "w") as f:
        json.dump(info, f, indent=2)
    uses_mask = config.MASK_MODE != "none"
    readme_path = os.path.join(out_dir, "README.txt")
    with open(readme_path, "w") as f:
        f.write(README.format(
            classes=", ".join(run.class_names), count=len(run.class_names), margin=config.CROP_MARGIN,
            size=int(config.IMAGE_SIZE), folder=out_dir, temperature=float(run.temperature),
            mask_note=("\nThe lesion mask is cut and resized the same way: masks float32 [B, S, S, 1] in 0..1."
                       if uses_mask else ""),
            mask_call=", masks=tf.constant(masks, tf.float32)" if uses_mask else "",
            criteria_note=("; " + ", ".join(f"{c['output']} [B, {c['units']}]" for c in criteria)
                           + " (sigmoid for one unit, else softmax over export.json's levels)") if criteria else ""))
    return written + [config_path, names_path, info_path, readme_path]
