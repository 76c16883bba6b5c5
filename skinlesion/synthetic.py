"""Synthetic dermoscopy: deterministic images with exact lesion masks and diagnoses.

``generate(seed)`` draws one dermoscopy-like image: a skin background of a
random tone, one lesion whose shape, border and colours follow its diagnosis
(nevus: round, symmetric, uniform brown; melanoma: asymmetric, notched,
variegated with black / blue-grey / red patches and dots; seborrheic
keratosis: waxy tan with milia-like bright dots and crypts; BCC: pinkish with
branching vessels; ...), then the artefacts real images carry: hairs crossing
lesion and skin, gel bubbles, the dermoscope's circular vignette, uneven light,
blur and sensor noise. The mask is the lesion polygon itself, so it is exact.

``generate_sample(seed)`` can also draw labelled dermoscopic structures
(pigment network, dots/globules, streaks, blue-whitish veil, regression,
milia-like cysts, negative network; skinlesion.synthetic_structures) and
returns the image's typed criteria (skinlesion.synthetic_criteria) and its
ISIC 2018 Task 2 attribute masks; ``write_task2_tree`` writes them in the
challenge's layout. Without structures every image is as it always was.

The drawing lives in skinlesion.synthetic_lesion (outline, mask, colours per
diagnosis), skinlesion.synthetic_skin (skin, artefacts) and
skinlesion.synthetic_structures; this module is the dataset-level API (class
plans, ``generate``, ``generate_sample``, folders on disk).

The same seed always gives the same image (``numpy.random.default_rng``);
seeds may be ints or tuples of ints, e.g. ``(seed, subset, index)``.
"""
import csv
import logging
import os

from typing import NamedTuple

import numpy as np

from skinlesion import criteria as criteria_module
from skinlesion import schemes
from skinlesion.synthetic_criteria import criteria_cell, lesion_criteria, task2_masks
from skinlesion.synthetic_structures import draw_structures, structure_rng
from skinlesion.synthetic_lesion import SHAPES, SYNTHETIC_DIAGNOSES, draw_lesion  # noqa: F401  (public here)
from skinlesion.synthetic_skin import SKIN_TONES, add_artefacts, skin_background  # noqa: F401  (public here)

log = logging.getLogger(__name__)

# For each scheme class, the synthetic diagnoses that stand for it (drawn
# uniformly from the list; repeats weight the draw).
SCHEME_SOURCES = {
    "lesion": {"lesion": SYNTHETIC_DIAGNOSES},
    "isic2017": {"melanoma": ("melanoma",), "seborrheic_keratosis": ("seborrheic_keratosis",),
                 "nevus": ("common_nevus", "common_nevus", "common_nevus", "atypical_nevus")},
    "isic2018": {"MEL": ("melanoma",),
                 "NV": ("common_nevus", "common_nevus", "common_nevus", "atypical_nevus"),
                 "BCC": ("bcc",), "AKIEC": ("akiec",), "BKL": ("bkl", "seborrheic_keratosis"),
                 "DF": ("df",), "VASC": ("vasc",)},
    "binary": {"benign": ("common_nevus", "atypical_nevus", "seborrheic_keratosis", "bkl", "df", "vasc"),
               "malignant": ("melanoma", "melanoma", "bcc", "akiec")},
    "ph2": {"common_nevus": ("common_nevus",), "atypical_nevus": ("atypical_nevus",),
            "melanoma": ("melanoma",)},
}


def resolve_diagnosis(diagnosis, scheme, rng):
    """Turn a diagnosis request into one of SYNTHETIC_DIAGNOSES.

    diagnosis: a synthetic diagnosis, a class name of ``scheme`` (e.g. "MEL",
    "malignant": one of its sources is drawn with ``rng``) or an alias known to
    schemes.FOLDER_ALIASES ("nevus" -> common_nevus).
    """
    if diagnosis in SYNTHETIC_DIAGNOSES:
        return diagnosis
    sources = SCHEME_SOURCES[schemes.check_scheme_name(scheme)]
    if diagnosis in sources:
        options = sources[diagnosis]
        return options[rng.integers(len(options))]
    canonical = schemes.normalise_raw("folder", diagnosis)
    if canonical == "nevus":
        return "common_nevus"
    if canonical in SYNTHETIC_DIAGNOSES:
        return canonical
    raise ValueError(f"diagnosis={diagnosis!r}: not a synthetic diagnosis ({', '.join(SYNTHETIC_DIAGNOSES)}) "
                     f"nor a class of scheme {scheme!r} ({', '.join(sources)})")


def _class_weights(scheme, weights):
    """Normalised probabilities [K] over the classes of ``scheme`` from a weights dict/sequence."""
    names = schemes.class_names(scheme) if scheme != "lesion" else SYNTHETIC_DIAGNOSES
    if weights is None:
        return names, np.full(len(names), 1.0 / len(names))
    if isinstance(weights, dict):
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(f"weights: unknown class names {sorted(unknown)} for scheme {scheme!r}; "
                             f"use {', '.join(names)}")
        values = np.array([float(weights.get(n, 0.0)) for n in names])
    else:
        values = np.asarray(weights, np.float64)
        if values.shape != (len(names),):
            raise ValueError(f"weights: expected {len(names)} numbers for {', '.join(names)}, "
                             f"got {values.shape}")
    if (values < 0).any() or values.sum() <= 0:
        raise ValueError(f"weights={weights!r}: must be >= 0 with a positive sum")
    return names, values / values.sum()


def plan_diagnoses(count, scheme="lesion", weights=None, seed=0):
    """The class requested for each of ``count`` images: exactly balanced by default.

    With weights=None the classes of ``scheme`` (for "lesion": every synthetic
    diagnosis) are cycled in a seeded order, so counts differ by at most one.
    With weights (dict class -> weight, or one number per class) each image's
    class is drawn independently. Returns a list [count] of names that
    generate(..., diagnosis=name, scheme=scheme) accepts.
    """
    names, probs = _class_weights(scheme, weights)
    rng = np.random.default_rng([int(s) for s in np.atleast_1d(seed)] + [7919])
    if weights is None:
        order = list(rng.permutation(len(names)))
        return [names[order[i % len(names)]] for i in range(count)]
    return [names[i] for i in rng.choice(len(names), size=count, p=probs)]


# --------------------------------------------------------------------------- public API

class SyntheticSample(NamedTuple):
    """One synthetic image with everything known about it (see generate_sample)."""
    image: np.ndarray            # uint8 [H, W, 3] RGB
    mask: np.ndarray             # bool [H, W], the lesion
    diagnosis: str               # one of SYNTHETIC_DIAGNOSES
    criteria: dict               # typed criteria (skinlesion.criteria.validate passes)
    structure_masks: dict        # {ISIC 2018 Task 2 attribute: bool [H, W]}; {} without structures
    seed: object                 # the index_or_seed it was drawn from
    structure_areas: dict        # {structure drawn: bool [H, W]}, names of synthetic_structures.draw_structures


def _draw(index_or_seed, size, diagnosis, scheme, weights, artefacts, structures, probabilities=None):
    """(image float32 [H, W, 3], mask bool [H, W], diagnosis, clean float32 [H, W, 3] before
    artefacts, scale, structure masks {name: bool [H, W]} or None, structure levels {name: level})."""
    height, width = int(size[0]), int(size[1])
    if height < 16 or width < 16:
        raise ValueError(f"size={size!r}: need at least 16x16 pixels")
    rng = np.random.default_rng(index_or_seed)
    if diagnosis is None:
        names, probs = _class_weights(scheme, weights)
        diagnosis = names[rng.choice(len(names), p=probs)]
    diagnosis = resolve_diagnosis(diagnosis, scheme, rng)
    scale = min(height, width) / 256.0

    image = skin_background(rng, height, width)
    image, mask, polygon = draw_lesion(rng, image, diagnosis, scale, built_in_structures=not structures)
    drawn, levels = None, {}
    if structures:
        # Own stream: the base lesion and artefacts draw the same numbers with or without structures.
        image, drawn, levels = draw_structures(structure_rng(index_or_seed), image, mask, diagnosis, scale,
                                               probabilities)
    clean = image.copy()  # add_artefacts draws in place
    if artefacts:
        image = add_artefacts(rng, image, polygon.mean(axis=0), scale)
    return image, mask, diagnosis, clean, scale, drawn, levels


def generate(index_or_seed, size=(256, 256), diagnosis=None, scheme="lesion", weights=None,
             artefacts=True, structures=False):
    """Draw one synthetic dermoscopy image with its exact mask and diagnosis.

    index_or_seed: int or tuple of ints; the same value always gives the same image.
    size: (H, W) in pixels.
    diagnosis: None to draw a class of ``scheme`` (by ``weights``, default
        uniform), or a synthetic diagnosis / class name of ``scheme`` / alias.
    scheme: class scheme the random draw is balanced over (schemes.SCHEMES).
    weights: optional dict {class name: weight} or one weight per class.
    artefacts: False for a clean image (no hairs, bubbles, vignette, blur).
    structures: True to draw labelled dermoscopic structures (generate_sample
        returns their labels and masks); False keeps the images as they always were.

    Returns (image uint8 [H, W, 3] RGB, mask bool [H, W], diagnosis str, one of
    SYNTHETIC_DIAGNOSES).
    """
    image, mask, diagnosis = _draw(index_or_seed, size, diagnosis, scheme, weights, artefacts, structures)[:3]
    return np.clip(image, 0, 255).astype(np.uint8), mask, diagnosis


def generate_sample(index_or_seed, size=(256, 256), diagnosis=None, scheme="lesion", weights=None,
                    artefacts=True, structures=True, probabilities=None):
    """Draw one synthetic image with its criteria and ISIC 2018 Task 2 attribute masks.

    Arguments as generate; probabilities: optional {structure: probability}
    overriding skinlesion.synthetic_structures.STRUCTURE_PROBABILITIES for
    every diagnosis (e.g. all 0.5 so structures say nothing of the diagnosis).
    With structures=False the image is generate()'s and the criteria hold
    only asymmetry and colours. Returns a SyntheticSample: image uint8
    [H, W, 3], mask bool [H, W], diagnosis, criteria {name: typed value},
    structure_masks {attribute of criteria.TASK2_ATTRIBUTES: bool [H, W]}
    (all five; empty where absent) or {} without structures, seed,
    structure_areas {structure: bool [H, W]} for the structures drawn (also
    blue_whitish_veil and regression_areas, which Task 2 has no masks for).
    """
    image, mask, diagnosis, clean, scale, drawn, levels = _draw(
        index_or_seed, size, diagnosis, scheme, weights, artefacts, structures, probabilities)
    found = lesion_criteria(clean, mask, scale, drawn, levels)
    attribute_masks = task2_masks(drawn, mask.shape) if structures else {}
    areas = {name: region for name, region in (drawn or {}).items() if region.any()}
    return SyntheticSample(np.clip(image, 0, 255).astype(np.uint8), mask, diagnosis, found,
                           attribute_masks, index_or_seed, areas)


def write_folder(root, n, size=(256, 256), seed=0, scheme="lesion", weights=None, image_format="png",
                 structures=False):
    """Write ``n`` synthetic images as a ``folder`` layout and return one row per image.

    Writes root/images/synth_00000.<image_format>, root/masks/synth_00000_segmentation.png
    (mode L, 0/255) and root/labels.csv (image,label with the canonical
    diagnosis). Diagnoses are balanced over ``scheme`` unless ``weights`` is
    given. structures=True draws labelled structures (generate_sample) and
    adds one labels.csv column per criterion of skinlesion.criteria.CRITERIA,
    in the words criteria.parse_value reads ("" where unknown). Returns
    [{"image": file name, "label": diagnosis, "seed": (seed, i)}], plus
    "criteria" (typed dict) with structures.
    """
    from PIL import Image
    if image_format not in ("png", "jpg", "bmp"):
        raise ValueError(f"image_format={image_format!r}: use png, jpg or bmp")
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    plan = plan_diagnoses(n, scheme, weights, seed)
    rows = []
    for index, wanted in enumerate(plan):
        row = {"seed": (seed, index)}
        if structures:
            sample = generate_sample((seed, index), size, diagnosis=wanted, scheme=scheme)
            image, mask, diagnosis, row["criteria"] = sample.image, sample.mask, sample.diagnosis, sample.criteria
        else:
            image, mask, diagnosis = generate((seed, index), size, diagnosis=wanted, scheme=scheme)
        stem = f"synth_{index:05d}"
        name = f"{stem}.{image_format}"
        options = {"quality": 92} if image_format == "jpg" else {}
        Image.fromarray(image).save(os.path.join(root, "images", name), **options)
        _save_mask(mask, os.path.join(root, "masks", f"{stem}_segmentation.png"))
        rows.append({"image": name, "label": diagnosis, **row})
    columns = list(criteria_module.CRITERIA) if structures else []
    with open(os.path.join(root, "labels.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", *columns])
        for row in rows:
            cells = [criteria_cell(c, row["criteria"].get(c)) for c in columns]
            writer.writerow([row["image"], row["label"], *cells])
    log.info("Wrote %d synthetic images to %s", n, root)
    return rows


def _save_mask(mask, path):
    """Write a bool mask [H, W] as a mode L 0/255 PNG."""
    from PIL import Image
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


TASK2_INPUT = "ISIC2018_Task1-2_Training_Input"
TASK2_ATTRIBUTE_DIR = "ISIC2018_Task2_Training_GroundTruth_v3"
TASK1_MASK_DIR = "ISIC2018_Task1_Training_GroundTruth"


def write_task2_tree(root, n, size=(256, 256), seed=0, scheme="isic2017", weights=None, probabilities=None):
    """Write ``n`` images with structures as an ISIC 2018 Task 1-2 training tree; one row per image.

    Writes root/ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg,
    root/ISIC2018_Task1_Training_GroundTruth/ISIC_0000000_segmentation.png and
    root/ISIC2018_Task2_Training_GroundTruth_v3/ISIC_0000000_attribute_<name>.png
    for each of criteria.TASK2_ATTRIBUTES (mode L, 0/255; all zero where the
    attribute is absent, as in the challenge's files). The default scheme
    draws melanoma, nevi and seborrheic keratosis, the challenge's classes.
    probabilities: as generate_sample. Returns [{"image_id", "label",
    "criteria", "seed"}].
    """
    from PIL import Image
    for folder in (TASK2_INPUT, TASK2_ATTRIBUTE_DIR, TASK1_MASK_DIR):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    rows = []
    for index, wanted in enumerate(plan_diagnoses(n, scheme, weights, seed)):
        sample = generate_sample((seed, index), size, diagnosis=wanted, scheme=scheme, probabilities=probabilities)
        image_id = f"ISIC_{index:07d}"
        Image.fromarray(sample.image).save(os.path.join(root, TASK2_INPUT, f"{image_id}.jpg"), quality=92)
        _save_mask(sample.mask, os.path.join(root, TASK1_MASK_DIR, f"{image_id}_segmentation.png"))
        for attribute, region in sample.structure_masks.items():
            _save_mask(region, os.path.join(root, TASK2_ATTRIBUTE_DIR, f"{image_id}_attribute_{attribute}.png"))
        rows.append({"image_id": image_id, "label": sample.diagnosis, "criteria": sample.criteria,
                     "seed": (seed, index)})
    log.info("Wrote an ISIC 2018 Task 2 tree of %d synthetic images to %s", n, root)
    return rows


def write_samples(out_dir, size=(384, 384), diagnoses=("melanoma", "common_nevus",
                                                       "seborrheic_keratosis", "bcc"), seed=2024,
                  structures=False):
    """Write one demo JPEG per diagnosis to ``out_dir`` (samples/synthetic_<diagnosis>.jpg).

    structures=True draws labelled structures and names the files
    synthetic_structures_<diagnosis>.jpg. Returns the written paths. JPEG
    keeps each file well under 200 KB.
    """
    from PIL import Image
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for index, diagnosis in enumerate(diagnoses):
        image, _, _ = generate((seed, index), size, diagnosis=diagnosis, structures=structures)
        path = os.path.join(out_dir, f"synthetic_{'structures_' if structures else ''}{diagnosis}.jpg")
        Image.fromarray(image).save(path, quality=90)
        paths.append(path)
    return paths
