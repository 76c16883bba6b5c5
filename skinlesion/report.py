"""The investigate report: one HTML page on the data, the anchors, the model's stages and its mistakes.

    from skinlesion.report import investigate
    summary = investigate(dataset, "logs/report", config, model=model)

writes ``OUT/index.html`` (self-contained: inline CSS, no script, no network;
figures are PNGs in ``OUT/figures/`` referenced by relative paths) and
``OUT/summary.json``, the Matterport inspect notebooks (data, anchors, RPN,
ROIs, detections, mAP, weights) in one page a person opens from disk.
The sections are built by skinlesion.report_sections, the figures drawn by
skinlesion.report_figures.

Images that fail to load are skipped with one warning each and listed in
``summary["skipped"]``; a model that detects nothing still gets a report.
"""
import html
import logging
import os
import time

import numpy as np

from mrcnn.boxes import extract_bboxes
# The numpy stage references live in mrcnn.reference; report.<name> still resolves for callers.
from mrcnn.reference import (match_detections, pooled_precision_recall, refine_rois,  # noqa: F401
                             top_rpn_proposals)
from skinlesion import inference
from skinlesion import report_figures as figures
from skinlesion import report_sections as sections
from skinlesion.evaluation import score_image
from skinlesion.jsonio import json_safe, write_json
from skinlesion.report_figures import note as _note
from skinlesion.report_sections import anchor_level_counts  # noqa: F401 - re-exported

log = logging.getLogger(__name__)


def _dataset_summary(dataset):
    """dataset.summary, or one rebuilt from image_info for a dataset not filled by load()."""
    if getattr(dataset, "summary", None):
        return dict(dataset.summary)
    counts = {}
    for info in dataset.image_info:
        counts[str(info.get("label"))] = counts.get(str(info.get("label")), 0) + 1
    return {"layout": "unknown", "subset": "unknown", "scheme": None, "images": len(dataset.image_info),
            "classes": counts, "skipped": []}

def _sample_ids(dataset, max_images, seed):
    """Up to max_images image ids, a seeded sample in id order (all ids when there are few)."""
    ids = np.asarray(dataset.image_ids)
    if max_images is None or len(ids) <= max_images:
        return [int(i) for i in ids]
    chosen = np.random.default_rng(seed).choice(ids, size=int(max_images), replace=False)
    return [int(i) for i in np.sort(chosen)]


def _examine(dataset, image_ids, skipped, errors, model, class_names, min_confidence):
    """Load each image once: keep a thumbnail, its lesion area and, with a model, its scores.

    An image or mask that fails to load goes to skipped, a model failure on an
    image to errors (the image stays in the data sections), one warning each.
    Returns: list of dicts {id, stem, label, class_id, shape, area (lesion
    fraction), thumb, thumb_mask, thumb_box, prediction (_score_image) or None}.
    """
    samples = []
    for image_id in image_ids:
        info = dataset.image_info[image_id]
        name = str(info.get("stem") or image_id)
        step, where = "image", info.get("path", name)
        try:
            image = dataset.load_image(image_id)
            step, where = "mask", info.get("mask_path") or where
            gt_masks, gt_class_ids = dataset.load_mask(image_id)
            gt_masks = np.asarray(gt_masks, bool)
            gt_masks = gt_masks[..., None] if gt_masks.ndim == 2 else gt_masks
            mask = np.any(gt_masks, axis=2)
        except Exception as err:  # noqa: BLE001 - one bad file must not stop the report
            log.warning("Skipping %s: %s cannot be loaded: %s", where, step, err)
            skipped.append({"file": str(where), "reason": f"{step}: {err}"})
            continue
        prediction = None
        if model is not None:
            try:
                prediction = _score_image(model, image, gt_masks, gt_class_ids, class_names, min_confidence)
            except Exception as err:  # noqa: BLE001
                log.warning("Model failed on %s: %s", info.get("path", name), err)
                errors.append({"section": "detect", "image": name, "error": f"{type(err).__name__}: {err}"})
        thumb_mask = figures.thumbnail(mask, is_mask=True)
        samples.append({
            "id": image_id, "stem": name, "label": info.get("label"), "class_id": int(info.get("class_id", 1)),
            "shape": image.shape, "area": float(mask.mean()), "thumb": figures.thumbnail(image),
            "thumb_mask": thumb_mask,
            "thumb_box": extract_bboxes(thumb_mask[..., None])[0] if thumb_mask.any() else None,
            "prediction": prediction})
    return samples


def _score_image(model, image, gt_masks, gt_class_ids, class_names, min_confidence):
    """Detect on one image and score it against its truth (gt_masks bool [H, W, G], gt_class_ids [G]).

    The predicted lesion and the image's class probabilities follow the
    predict / evaluate rule (skinlesion.inference) and the scores come from
    evaluation.score_image, as in ``lesions.py --mode evaluate``, so the
    numbers are the same.

    Returns: dict detections, top_score, top_class (most probable class or
    None without a detection), class_probs [K], thumb_prediction, metrics
    (ISIC Task 1), ap50 and ap (mask AP at 0.5 and 0.50:0.95, None without a
    lesion) and matches (match_detections).
    """
    result = model.detect([image])[0]
    predicted, used, _ = inference.lesion_mask(result, min_confidence)
    class_probs = inference.image_probabilities(result, used, class_names)
    detected = len(result["scores"]) > 0
    out = {"detections": int(len(result["scores"])),
           "top_score": float(np.max(result["scores"])) if detected else None,
           "top_class": class_names[1 + int(np.argmax(class_probs))] if detected else None,
           "class_probs": class_probs,
           "thumb_prediction": figures.thumbnail(predicted, is_mask=True)}
    scored = score_image(result, predicted, gt_masks, gt_class_ids)
    out["metrics"] = scored["metrics"]
    out["ap50"], out["ap"] = json_safe(scored["ap50"]), json_safe(scored["ap"])  # NaN (no lesion): None
    out["matches"] = match_detections(scored["detection_record"])
    return out


def _subset_counts(summary, subset_summaries, extra_summaries):
    """{subset: {images, classes, skipped}} from this dataset's summary and the others given."""
    given = dict(subset_summaries or {})
    for other in extra_summaries or []:
        given.setdefault(other.get("subset", f"other{len(given)}"), other)
    given[summary.get("subset", "this")] = summary
    order = ["train", "val", "test", "all"]
    names = sorted(given, key=lambda n: (order.index(n) if n in order else len(order), str(n)))
    return {name: {"images": int(given[name].get("images", 0)), "classes": dict(given[name].get("classes", {})),
                   "skipped": len(given[name].get("skipped", []))} for name in names}


def investigate(dataset, out_dir, config, model=None, max_images=50, title=None, subset_summaries=None,
                extra_summaries=None, seed=0, classifier=None):
    """Write an HTML report on a dataset (and a model) to out_dir; return its summary dict.

    dataset: a prepared LesionDataset (its ``summary`` from load()).
    out_dir: folder for index.html, summary.json and figures/ (created).
    config: the inference LesionConfig (IMAGES_PER_GPU=1).
    model: a MaskRCNN in inference mode with weights loaded, or None for the
        data and anchor sections only.
    max_images: images examined (a seeded sample when the subset is larger).
    title: page title (default names the layout and subset).
    subset_summaries: {subset: summary} of other subsets, for the counts table;
        extra_summaries: the same as a list of summaries.
    seed: seed of the image sample.
    classifier: a skinlesion.classifier_train.ClassifierRun, or None; adds
        the classifier section (skinlesion.report_criteria: diagnosis,
        criteria, 7-point readout, Grad-CAM maps).

    Returns the dict written to summary.json: layout, images, classes,
    skipped, subsets, anchors {level: count}, rpn_targets {positive,
    negative, neutral}; with a model also stages, segmentation, detection,
    classification (more than one class), weights, worst, per_image.
    """
    started = time.time()
    report = figures.Page(out_dir)
    summary = _dataset_summary(dataset)
    skipped = [dict(s) for s in summary.get("skipped", [])]
    image_ids = _sample_ids(dataset, max_images, seed)
    class_names = sections.config_class_names(config)
    begin, errors = time.time(), []
    samples = _examine(dataset, image_ids, skipped, errors, model, class_names,
                       config.DETECTION_MIN_CONFIDENCE)
    result = {"layout": summary.get("layout"), "subset": summary.get("subset"), "scheme": summary.get("scheme"),
              "root": summary.get("root"), "images": int(summary.get("images", len(dataset.image_ids))),
              "classes": dict(summary.get("classes", {})), "skipped": skipped,
              "subsets": _subset_counts(summary, subset_summaries, extra_summaries),
              "sampled_images": len(samples)}
    summary_for_page = dict(summary, skipped=skipped)
    timings = {"examine": round(time.time() - begin, 2)}

    def timed(name, function, *args, failed=None):
        """Run one section; a failure is logged and noted on the page, and the report goes on."""
        begin = time.time()
        try:
            value = function(*args)
        except Exception as err:  # noqa: BLE001 - one broken section must not lose the others
            log.exception("investigate: the %s section failed", name)
            errors.append({"section": name, "error": f"{type(err).__name__}: {err}"})
            report.section(f"{name}-error", f"{name.capitalize()} (failed)").append(
                f'<p class="bad">This section failed: {html.escape(type(err).__name__)}: '
                f"{html.escape(str(err))}</p>")
            value = failed
        timings[name] = round(time.time() - begin, 2)
        return value

    result.update(timed("data", sections.data_section, report, dataset, summary_for_page, result["subsets"],
                        samples, failed={}))
    result["anchors"], result["rpn_targets"] = timed("anchors", sections.anchor_section, report, dataset,
                                                     config, samples, failed=({}, {}))
    if model is None:
        parts = report.section("model", "Model")
        parts.append(_note("No model was given, so the model stages, results and weights are not shown; "
                           "pass --weights to see them."))
    elif not samples:
        report.section("model", "Model").append(_note("No image could be loaded, so the model was not run."))
    else:
        result["stages"] = timed("stages", sections.stage_section, report, dataset, model, config, samples[0],
                                 failed={})
        result.update(timed("results", sections.results_section, report, config, samples, failed={}))
        result["weights"] = timed("weights", sections.weight_section, report, model, failed={})
    if classifier is not None and samples:
        from skinlesion.report_criteria import classifier_section
        result["classifier"] = timed("classifier", classifier_section, report, dataset, classifier, samples,
                                     failed={})
    result["seconds"] = round(time.time() - started, 2)
    result["timings"] = timings
    result["errors"] = errors
    page_title = title or f"Investigation: {result['layout']} {result['subset']} ({result['scheme']})"
    meta = (f"Written {time.strftime('%Y-%m-%d %H:%M')} in {result['seconds']:.1f} s; "
            f"{result['sampled_images']} images examined. All numbers: ")
    result["report"] = report.write(page_title, meta)
    result = write_json(os.path.join(report.out_dir, "summary.json"), result, indent=2)
    log.info("Investigate report written to %s (%d figures, %.1f s)", result["report"], len(report.figures),
             result["seconds"])
    return result
