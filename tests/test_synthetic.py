"""Synthetic dermoscopy: deterministic, exact masks, visibly different classes, fast."""
import csv
import time

import cv2
import numpy as np
import pytest

from skinlesion import schemes
from skinlesion.synthetic import (SCHEME_SOURCES, SYNTHETIC_DIAGNOSES, generate, plan_diagnoses,
                                  write_folder, write_samples)


def test_same_seed_same_image_other_seed_other_image():
    first = generate(7, (96, 96))
    again = generate(7, (96, 96))
    other = generate(8, (96, 96))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2]
    assert not np.array_equal(first[0], other[0])
    assert np.array_equal(generate((1, 2, 3), (64, 64))[0], generate((1, 2, 3), (64, 64))[0])


def test_shapes_dtypes_and_lesion_size():
    for seed in range(12):
        image, mask, diagnosis = generate(seed, (96, 128))
        assert image.shape == (96, 128, 3) and image.dtype == np.uint8
        assert mask.shape == (96, 128) and mask.dtype == bool
        assert diagnosis in SYNTHETIC_DIAGNOSES
        assert 0.05 <= mask.mean() <= 0.55, (seed, diagnosis, mask.mean())


def test_mask_matches_the_drawn_lesion():
    """Without artefacts the lesion differs from the skin exactly where the mask is."""
    for seed, diagnosis in enumerate(["common_nevus", "melanoma", "seborrheic_keratosis", "df"]):
        image, mask, _ = generate(seed, (128, 128), diagnosis=diagnosis, artefacts=False)
        inner = cv2.erode(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        outer = ~cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        skin = np.median(image[outer], axis=0)
        distance = np.linalg.norm(image.astype(float) - skin, axis=-1)
        # Lesion pixels stand out from the skin colour; skin pixels do not.
        assert np.median(distance[inner]) > 3 * np.median(distance[outer]) + 10, diagnosis


def _lesion_stats(diagnosis, seeds):
    """Mean colour std inside the mask and mean solidity of the mask over ``seeds``."""
    spreads, solidities = [], []
    for seed in seeds:
        image, mask, _ = generate(seed, (128, 128), diagnosis=diagnosis, artefacts=False)
        inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        spreads.append(image[inner].astype(float).std(axis=0).mean())
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        contour = max(contours, key=cv2.contourArea)
        solidities.append(cv2.contourArea(contour) / cv2.contourArea(cv2.convexHull(contour)))
    return np.mean(spreads), np.mean(solidities)


def test_melanoma_is_more_variegated_and_irregular_than_nevus():
    mel_spread, mel_solidity = _lesion_stats("melanoma", range(8))
    nev_spread, nev_solidity = _lesion_stats("common_nevus", range(8))
    assert mel_spread > 1.5 * nev_spread
    assert mel_solidity < nev_solidity - 0.03


def test_class_colours_differ():
    """BCC and vascular lesions are redder than nevi; SK is lighter than nevi."""
    def mean_colour(diagnosis):
        """Mean RGB [3] inside the mask over six clean images."""
        values = []
        for seed in range(6):
            image, mask, _ = generate(seed, (96, 96), diagnosis=diagnosis, artefacts=False)
            values.append(image[mask].astype(float).mean(axis=0))
        return np.mean(values, axis=0)

    nevus, sk = mean_colour("common_nevus"), mean_colour("seborrheic_keratosis")
    bcc, vasc = mean_colour("bcc"), mean_colour("vasc")
    assert sk.mean() > nevus.mean() + 15
    assert bcc[0] - bcc[1] > 40 and vasc[0] - vasc[1] > 40


def test_requested_diagnosis_and_scheme_classes():
    assert generate(0, (64, 64), diagnosis="melanoma")[2] == "melanoma"
    assert generate(0, (64, 64), diagnosis="nevus")[2] == "common_nevus"
    assert generate(0, (64, 64), diagnosis="MEL", scheme="isic2018")[2] == "melanoma"
    for seed in range(10):
        diagnosis = generate(seed, (64, 64), diagnosis="malignant", scheme="binary")[2]
        assert schemes.to_class(diagnosis, "binary") == "malignant"
    with pytest.raises(ValueError, match="diagnosis"):
        generate(0, (64, 64), diagnosis="wart")


def test_every_scheme_source_maps_back_to_its_class():
    for scheme, sources in SCHEME_SOURCES.items():
        for class_name, diagnoses in sources.items():
            for diagnosis in diagnoses:
                assert schemes.to_class(diagnosis, scheme) == class_name, (scheme, diagnosis)


def test_plan_is_balanced_by_default_and_follows_weights():
    plan = plan_diagnoses(70, "isic2018", seed=1)
    assert set(plan) == set(schemes.SCHEMES["isic2018"])
    assert max(plan.count(c) for c in set(plan)) - min(plan.count(c) for c in set(plan)) <= 1
    weighted = plan_diagnoses(200, "binary", weights={"benign": 3, "malignant": 1}, seed=1)
    assert 120 < weighted.count("benign") < 180
    with pytest.raises(ValueError, match="weights"):
        plan_diagnoses(5, "binary", weights={"melanoma": 1})


def test_write_folder_round_trip(tmp_path):
    from PIL import Image
    rows = write_folder(str(tmp_path), 4, size=(64, 64), seed=2, scheme="ph2")
    assert [r["image"] for r in rows] == [f"synth_{i:05d}.png" for i in range(4)]
    with open(tmp_path / "labels.csv") as handle:
        labels = list(csv.DictReader(handle))
    assert [l["label"] for l in labels] == [r["label"] for r in rows]
    image, mask, diagnosis = generate((2, 0), (64, 64), diagnosis=rows[0]["label"], scheme="ph2")
    on_disk = np.asarray(Image.open(tmp_path / "images" / "synth_00000.png"))
    mask_on_disk = np.asarray(Image.open(tmp_path / "masks" / "synth_00000_segmentation.png"))
    assert np.array_equal(on_disk, image)
    assert np.array_equal(mask_on_disk > 128, mask)


def test_write_samples_small_files(tmp_path):
    paths = write_samples(str(tmp_path), size=(128, 128), diagnoses=("melanoma", "df"))
    assert len(paths) == 2
    assert all(p.endswith(".jpg") for p in paths)


def test_speed_under_50ms_per_256px_image():
    generate(0, (256, 256))  # warm-up (cv2 / numpy first calls)
    start = time.perf_counter()
    for seed in range(10):
        generate(seed, (256, 256))
    per_image = (time.perf_counter() - start) / 10
    # The budget is 50 ms; allow slack for a shared 2-core machine.
    assert per_image < 0.1, f"{per_image * 1000:.1f} ms per image"
