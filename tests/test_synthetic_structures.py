"""Synthetic structures: labelled, masked, drawn by documented odds, generate() unchanged by default."""
import csv
import hashlib

import cv2
import numpy as np
import pytest

from skinlesion import criteria
from skinlesion.synthetic import generate, generate_sample, write_folder, write_samples, write_task2_tree
from skinlesion.synthetic_criteria import ASYMMETRY_THRESHOLD, lesion_asymmetry, mirror_mismatch
from skinlesion.synthetic_structures import STRUCTURE_PROBABILITIES, streak_allowance

# sha256 (first 16 hex digits) of image bytes + packed mask bits, recorded from
# generate() before structures existed: the default images must never change.
REFERENCE_HASHES = {
    ((64, 64), 0, True): ("akiec", "c2231e8c2cc41a9d"),
    ((64, 64), 7, False): ("akiec", "e46332a9dbe47728"),
    ((64, 64), (3, 1), True): ("melanoma", "765e1e08cc538f67"),
    ((64, 64), (2024, 5), True): ("bcc", "31faf822fb0da574"),
    ((128, 96), 0, True): ("akiec", "7d86346cbd98d34f"),
    ((128, 96), (3, 1), False): ("melanoma", "9ff38cd284a3a337"),
    ((128, 96), (2024, 5), True): ("bcc", "44fccbd83e0c80a6"),
}
NONE = {name: 0.0 for name in STRUCTURE_PROBABILITIES["melanoma"]}


def _digest(image, mask):
    """First 16 hex digits of sha256 over the image bytes and the packed mask."""
    return hashlib.sha256(image.tobytes() + np.packbits(mask).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("key", sorted(REFERENCE_HASHES, key=str))
def test_generate_is_unchanged_by_default(key):
    size, seed, artefacts = key
    image, mask, diagnosis = generate(seed, size, artefacts=artefacts)
    assert (diagnosis, _digest(image, mask)) == REFERENCE_HASHES[key]
    image, mask, _ = generate(seed, size, artefacts=artefacts, structures=False)
    assert _digest(image, mask) == REFERENCE_HASHES[key][1]


def test_named_diagnoses_unchanged_and_sample_without_structures_is_generate():
    assert _digest(*generate(11, (96, 96), diagnosis="melanoma")[:2]) == "b4fae27e6d70f7d6"
    assert _digest(*generate(11, (96, 96), diagnosis="common_nevus")[:2]) == "556e9966633f6ce5"
    plain = generate_sample((3, 1), (64, 64), structures=False)
    assert _digest(plain.image, plain.mask) == "765e1e08cc538f67"
    assert set(plain.criteria) == {"asymmetry", "colours"} and plain.structure_masks == {}


def test_same_seed_same_sample():
    first, again = generate_sample((4, 2), (96, 96)), generate_sample((4, 2), (96, 96))
    assert np.array_equal(first.image, again.image) and np.array_equal(first.mask, again.mask)
    assert first.criteria == again.criteria and first.diagnosis == again.diagnosis
    assert all(np.array_equal(first.structure_masks[a], again.structure_masks[a]) for a in first.structure_masks)
    assert not np.array_equal(first.image, generate_sample((4, 3), (96, 96)).image)


def test_structures_leave_the_base_lesion_alone():
    """Same outline and diagnosis; off the lesion (and the streaks' rim) the clean pixels are identical."""
    for seed in range(6):
        plain = generate((seed, 8), (96, 96), artefacts=False)
        sample = generate_sample((seed, 8), (96, 96), artefacts=False)
        assert np.array_equal(plain[1], sample.mask) and plain[2] == sample.diagnosis
        rim = 2 * streak_allowance(96 / 256) + 1
        far = ~cv2.dilate(sample.mask.astype(np.uint8), np.ones((rim, rim), np.uint8)).astype(bool)
        assert np.array_equal(plain[0][far], sample.image[far])
        with_art = generate_sample((seed, 8), (96, 96))
        assert np.array_equal(with_art.mask, plain[1])


def test_criteria_typed_valid_and_masks_agree_with_them():
    for seed in range(40):
        size = (64, 64) if seed % 2 else (128, 128)
        sample = generate_sample((seed, 1), size, scheme="ph2")
        found = sample.criteria
        assert criteria.validate(found) == found
        assert set(criteria.PH2_CRITERIA) - {"pigment_network"} <= set(found)
        assert set(criteria.TASK2_CRITERIA) <= set(found)
        assert set(sample.structure_masks) == set(criteria.TASK2_ATTRIBUTES)
        lesion = sample.mask
        # Streaks may reach streak_allowance pixels past the border; nothing else leaves the lesion.
        allowance = streak_allowance(min(size) / 256)
        kernel = np.ones((2 * allowance + 1, 2 * allowance + 1), np.uint8)
        near = cv2.dilate(lesion.astype(np.uint8), kernel).astype(bool)
        for attribute, region in sample.structure_masks.items():
            assert region.dtype == bool and region.shape == lesion.shape
            assert region.any() == found[f"task2_{attribute}"], (seed, attribute)
            assert not (region & ~(near if attribute == "streaks" else lesion)).any(), (seed, attribute)
        assert found["task2_globules"] == (found["dots_globules"] != "absent")
        assert found["task2_pigment_network"] == ("pigment_network" in found)
        assert found["task2_streaks"] == found["streaks"]
        for name in ("blue_whitish_veil", "regression_areas"):
            assert found[name] == (name in sample.structure_areas)
            if found[name]:
                assert not (sample.structure_areas[name] & ~lesion).any()


def _frequencies(diagnosis, count=200, size=(64, 64)):
    """Observed rate of each structure (names of STRUCTURE_PROBABILITIES) over ``count`` draws."""
    seen = dict.fromkeys(NONE, 0)
    networks = 0
    for index in range(count):
        found = generate_sample((index, 31), size, diagnosis=diagnosis, artefacts=False).criteria
        networks += "pigment_network" in found
        seen["network"] += "pigment_network" in found
        seen["atypical_network"] += found.get("pigment_network") == "atypical"
        seen["typical_globules"] += found["dots_globules"] == "typical"
        seen["atypical_globules"] += found["dots_globules"] == "atypical"
        seen["streaks"] += found["streaks"]
        seen["veil"] += found["blue_whitish_veil"]
        seen["regression"] += found["regression_areas"]
        seen["milia"] += found["task2_milia_like_cyst"]
        seen["negative_network"] += found["task2_negative_network"]
    rates = {name: value / count for name, value in seen.items()}
    rates["atypical_network"] = seen["atypical_network"] / max(networks, 1)
    return rates


def test_presence_follows_the_documented_odds_and_the_diagnosis():
    observed = {d: _frequencies(d) for d in ("melanoma", "common_nevus")}
    for diagnosis, rates in observed.items():
        for name, rate in rates.items():
            # 200 draws: a binomial rate's standard deviation is at most 0.035.
            assert abs(rate - STRUCTURE_PROBABILITIES[diagnosis][name]) < 0.1, (diagnosis, name, rate)
    melanoma, nevus = observed["melanoma"], observed["common_nevus"]
    for name in ("atypical_network", "atypical_globules", "streaks", "veil", "regression"):
        assert melanoma[name] > nevus[name] + 0.25, name
    assert nevus["typical_globules"] > melanoma["typical_globules"] + 0.15


def test_probabilities_override_and_unknown_names():
    sample = generate_sample(5, (64, 64), diagnosis="vasc", probabilities={**NONE, "streaks": 1.0, "veil": 1.0})
    assert sample.criteria["streaks"] and sample.criteria["blue_whitish_veil"]
    assert sample.criteria["dots_globules"] == "absent" and "pigment_network" not in sample.criteria
    with pytest.raises(ValueError, match="probabilities"):
        generate_sample(5, (64, 64), probabilities={"veils": 0.5})


def test_colours_follow_what_was_drawn():
    """Veil shows blue-grey and white, regression white or blue-grey, atypical marks dark brown or black."""
    veils = 0
    for index in range(60):
        found = generate_sample((index, 17), (96, 96), diagnosis="melanoma").criteria
        assert found["colours"] and found["colours"] <= set(criteria.COLOURS)
        if found["blue_whitish_veil"]:
            veils += 1
            assert "blue_gray" in found["colours"], index
        if found["regression_areas"]:
            assert {"white", "blue_gray"} & found["colours"], index
        if "atypical" in (found.get("pigment_network"), found["dots_globules"]):
            assert {"dark_brown", "black"} & found["colours"], index
    assert veils > 20
    whites = [generate_sample((i, 18), (96, 96), probabilities={"veil": 1.0}).criteria["colours"] for i in range(20)]
    assert sum("white" in c for c in whites) >= 18
    nevus = generate_sample(3, (128, 128), diagnosis="common_nevus", probabilities=NONE).criteria["colours"]
    assert nevus <= {"light_brown", "dark_brown"}


def test_asymmetry_rule_on_hand_made_shapes():
    yy, xx = np.mgrid[0:101, 0:121]
    ellipse = ((xx - 60) / 40.0) ** 2 + ((yy - 50) / 25.0) ** 2 <= 1
    assert max(mirror_mismatch(ellipse)) < 0.02 and lesion_asymmetry(ellipse) == 0
    # A half-disc is symmetric about its own axis through the flat side's middle, not about the other.
    half = (((xx - 60) ** 2 + (yy - 50) ** 2) <= 40 ** 2) & (xx >= 60)
    assert sorted(m > ASYMMETRY_THRESHOLD for m in mirror_mismatch(half)) == [False, True]
    assert lesion_asymmetry(half) == 1
    scalene = np.zeros((101, 121), np.uint8)
    cv2.fillPoly(scalene, [np.array([[10, 90], [110, 90], [10, 30]], np.int32)], 1)  # a right triangle
    assert lesion_asymmetry(scalene.astype(bool)) == 2


def test_write_folder_structures_round_trip(tmp_path):
    rows = write_folder(str(tmp_path), 6, size=(64, 64), seed=4, scheme="ph2", structures=True)
    with open(tmp_path / "labels.csv") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["image", "label", *criteria.CRITERIA]
    for row, line in zip(rows, table):
        parsed = criteria.validate({name: criteria.parse_value(name, line[name]) for name in criteria.CRITERIA})
        assert parsed == row["criteria"], line
    sample = generate_sample((4, 0), (64, 64), diagnosis=rows[0]["label"], scheme="ph2")
    from PIL import Image
    assert np.array_equal(np.asarray(Image.open(tmp_path / "images" / rows[0]["image"])), sample.image)


def test_write_folder_without_structures_keeps_two_columns(tmp_path):
    write_folder(str(tmp_path), 2, size=(32, 32), seed=1)
    with open(tmp_path / "labels.csv") as handle:
        assert handle.readline().strip() == "image,label"


def test_write_task2_tree_official_names(tmp_path):
    from PIL import Image
    rows = write_task2_tree(str(tmp_path), 3, size=(64, 64), seed=2)
    assert [r["image_id"] for r in rows] == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
    for row in rows:
        image_id = row["image_id"]
        assert (tmp_path / "ISIC2018_Task1-2_Training_Input" / f"{image_id}.jpg").is_file()
        segmentation = Image.open(tmp_path / "ISIC2018_Task1_Training_GroundTruth" / f"{image_id}_segmentation.png")
        assert segmentation.mode == "L" and np.asarray(segmentation).any()
        for attribute in criteria.TASK2_ATTRIBUTES:
            path = tmp_path / "ISIC2018_Task2_Training_GroundTruth_v3" / f"{image_id}_attribute_{attribute}.png"
            mask = Image.open(path)
            values = np.asarray(mask)
            assert mask.mode == "L" and set(np.unique(values)) <= {0, 255}
            assert values.any() == row["criteria"][f"task2_{attribute}"], (image_id, attribute)


def test_write_samples_with_structures(tmp_path):
    paths = write_samples(str(tmp_path), size=(96, 96), diagnoses=("melanoma",), structures=True)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["synthetic_structures_melanoma.jpg"]
