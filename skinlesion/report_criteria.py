"""The investigate report's classifier section: diagnosis, criteria, 7-point readout and where the model looked.

``lesions.py --mode investigate --classifier CLS_RUN`` adds this section:
for a few sampled images, the classifier's crop (around the ground-truth
lesion mask, so the section shows the classifier, not the segmenter), a
Grad-CAM map of the predicted diagnosis and one of the most probable
abnormal criterion (Selvaraju et al., "Grad-CAM: Visual Explanations from
Deep Networks via Gradient-based Localization", ICCV 2017: the class score's
gradient averaged over each feature map weighs that map; the weighted sum,
rectified, is the map), and a table of the criteria the classifier found
beside the dataset's own where it has them.
"""
import logging
import weakref

import keras
import numpy as np
import tensorflow as tf

from skinlesion import criteria as crit
from skinlesion import report_figures as figures
from skinlesion.classifier import lesion_crop, model_inputs
from skinlesion.classifier_criteria import DIAGNOSIS, criteria_record, key
from skinlesion.report_figures import note as _note, table as _table

log = logging.getLogger(__name__)

SECTION_IMAGES = 6


# One features-and-outputs model per classifier (weak keys: gone with the classifier).
_GRADCAM_MODELS = weakref.WeakKeyDictionary()


def _features_and_outputs(model, config):
    """keras.Model over the classifier's own graph: its inputs -> (backbone features [B, h, w, C],
    {output name: [B, units]}).

    The features are the backbone's output as the classifier's pooling layer
    receives it (``pool``, or ``mask_attention`` with the mask beside it), so
    the map follows whatever the heads do with them (mask channel, attention,
    criteria heads) without a second copy of that wiring.
    """
    if model not in _GRADCAM_MODELS:
        if config.MASK_MODE == "attention":
            features = model.get_layer("mask_attention").input[0]
        else:
            features = model.get_layer("pool").input
        outputs = model.output if isinstance(model.output, dict) else {DIAGNOSIS: model.output}
        _GRADCAM_MODELS[model] = keras.Model(model.input, [features, outputs], name=f"{model.name}_gradcam")
    return _GRADCAM_MODELS[model]


def gradcam(model, config, crop, crop_mask, output=DIAGNOSIS, index=0):
    """Grad-CAM map float32 [S, S] in 0..1 of one output unit over a crop.

    crop: uint8 [S, S, 3]; crop_mask: float [S, S] in 0..1; output: the
    model's output name ("class_probs" or "criterion_<name>"); index: the
    unit (class or level; 0 for a binary criterion). The map is computed on
    the backbone's last feature map and resized to the crop.
    """
    x = tf.nest.map_structure(tf.constant, model_inputs(config, crop[None], crop_mask[None]))
    with tf.GradientTape() as tape:
        # Watching the pixels records every op after them, frozen layers included (not the
        # mask: the attention weights resize it by area, which has no gradient).
        tape.watch(x["image"] if isinstance(x, dict) else x)
        features, outputs = _features_and_outputs(model, config)(x, training=False)
        score = outputs[output][0, int(index)]
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[0].numpy()
    side = int(config.IMAGE_SIZE)
    cam = tf.image.resize(cam[..., None], (side, side), method="bilinear").numpy()[..., 0]
    top = float(cam.max())
    return (cam / top if top > 0 else cam).astype(np.float32)


def _strongest_criterion(record, outputs):
    """(output, unit index, title) of the most probable abnormal criterion of a criteria_record, or None."""
    best = None
    for out in outputs:
        entry = record["criteria"][out.name]
        if out.binary:
            p, unit = entry["probability"], 0
        else:
            probs = list(entry["probabilities"].values())
            unit = len(out.levels) - 1 if out.criterion != "asymmetry" else int(np.argmax(probs[1:])) + 1
            p = probs[unit]
        if best is None or p > best[3]:
            best = (out, unit, out.name.replace("_", " "), p)
    return best


def _known_criteria(info):
    """The dataset's criteria of an image as short text ("" when it has none)."""
    known = info.get("criteria") or {}
    parts = []
    for name, value in known.items():
        if isinstance(value, frozenset):
            value = "+".join(sorted(value)) or "none"
        parts.append(f"{name}={value}")
    return ", ".join(parts)


def classifier_section(report, dataset, run, samples, images=SECTION_IMAGES):
    """Append the classifier section for up to ``images`` samples; returns its numbers for summary.json.

    run: a skinlesion.classifier_train.ClassifierRun; samples: skinlesion.report's
    examined samples (ids into ``dataset``). Returns {"run", "images": [{stem,
    diagnosis, probability, criteria, seven_point, truth}]}.
    """
    parts = report.section("classifier", "Classifier, criteria and where it looked")
    config, names, rows, panels, records = run.config, run.class_names, [], [], []
    for sample in samples[:images]:
        image = dataset.load_image(sample["id"])
        masks, _ = dataset.load_mask(sample["id"])
        mask = np.any(np.asarray(masks, bool).reshape(masks.shape[0], masks.shape[1], -1), axis=2)
        crop, crop_mask, _, kind = lesion_crop(image, mask, config.CROP_MARGIN, config.IMAGE_SIZE)
        probs, criteria = run.predict(crop[None], crop_mask[None])
        top = int(np.argmax(probs[0]))
        record = criteria_record({k: v[0] for k, v in criteria.items()}, run.outputs) if run.outputs else None
        maps = [(gradcam(run.model, config, crop, crop_mask, DIAGNOSIS, top), f"{names[top]} {probs[0, top]:.2f}")]
        found = ""
        if record:
            strongest = _strongest_criterion(record, run.outputs)
            if strongest is not None:
                out, unit, title, p = strongest
                maps.append((gradcam(run.model, config, crop, crop_mask, key(out), unit), f"{title} {p:.2f}"))
            found = ", ".join(f"{n} {e['probability']:.2f}" if "probability" in e else
                              f"{n} {e['predicted']} {max(e['probabilities'].values()):.2f}"
                              for n, e in record["criteria"].items()
                              if e.get("probability", 0) >= 0.5 or ("probabilities" in e and e["predicted"]
                                                                   not in ("typical", "absent", 0)))
        panels.append((sample["stem"], crop, maps, kind))
        info = dataset.image_info[sample["id"]]
        seven = record["seven_point"]["score"] if record and record["seven_point"] else None
        rows.append([sample["stem"], f"{names[top]} ({probs[0, top]:.2f})", seven, found or "-",
                     _known_criteria(info) or "-"])
        records.append({"stem": sample["stem"], "diagnosis": names[top], "probability": float(probs[0, top]),
                        **(record or {}), "truth": info.get("criteria")})
    if not panels:
        parts.append(_note("No image could be loaded for the classifier."))
        return {"run": run.run_dir, "images": []}
    path = report.path("classifier_gradcam.png")
    _gradcam_figure(panels, path)
    parts.append(report.figure(path, "Each row: the classifier's crop, then Grad-CAM maps (red = where the "
                                     "score rose most) of the predicted diagnosis and of the most probable "
                                     "abnormal criterion."))
    parts.append(_table(["image", "diagnosis", "7-point readout", "criteria found (p >= 0.5, or atypical)",
                         "criteria in the dataset"], rows))
    parts.append(_note(f"7-point readout: {', '.join(i[3] for i in crit.SEVEN_POINT)} "
                       f"(expected points, of {sum(i[2] for i in crit.SEVEN_POINT)}; 3 or more is suspicious "
                       "in Argenziano et al. 1998; not counted: " + ", ".join(crit.SEVEN_POINT_NOT_COUNTED)
                       + "). A readout of the predicted criteria, not a diagnosis."))
    if not run.outputs:
        parts.append(_note("This classifier run has no criteria head (train it with --config CRITERIA=ph2)."))
    return {"run": run.run_dir, "images": records}


def _gradcam_figure(panels, path):
    """One row per image: crop, then each (map [S, S], title) blended over it. Returns: path."""
    from matplotlib.figure import Figure  # not pyplot: no global figure is left open
    cols = 1 + max(len(maps) for _, _, maps, _ in panels)
    fig = Figure(figsize=(2.4 * cols, 2.5 * len(panels)))
    for row, (stem, crop, maps, kind) in enumerate(panels):
        axes = [fig.add_subplot(len(panels), cols, row * cols + col + 1) for col in range(cols)]
        axes[0].imshow(crop)
        axes[0].set_title(f"{stem} ({kind} crop)", fontsize=8)
        for col, (cam, title) in enumerate(maps, start=1):
            axes[col].imshow(crop)
            axes[col].imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            axes[col].set_title(title, fontsize=8)
        for ax in axes:
            ax.axis("off")
    return figures.save(fig, path)
