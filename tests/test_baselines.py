"""bench/baselines.py: the Otsu segmenter, the seed U-Net and both commands end to end.

Synthetic images only (skinlesion.synthetic). The U-Net command runs once per
module, at 64 px for one epoch on six images.
"""
import csv
import json
import os
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

# bench/ is a namespace package beside mrcnn/ and skinlesion/ (no __init__.py) that
# setup.py does not install: import it from this repository whatever pytest's directory.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench import baselines  # noqa: E402

# Keras's save_weights converts variables with np.array(copy=False) (numpy 2 deprecation).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

from skinlesion.scoring import segmentation_metrics  # noqa: E402
from skinlesion.synthetic import generate  # noqa: E402

DARK_DIAGNOSES = ("common_nevus", "atypical_nevus", "melanoma")


def jaccard(truth, prediction):
    return segmentation_metrics(truth, prediction)["jaccard"]


def disc(shape, centre, radius):
    """bool [H, W], True within radius of centre (row, col)."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def grey_image(luminance):
    """uint8 [H, W, 3] from a [H, W] luminance."""
    return np.repeat(np.clip(luminance, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


# ----------------------------------------------------------------- fixtures

def _write_item(folder, stem, seed, size, diagnosis):
    """Write a synthetic jpg + png mask pair; return its split entry with paths relative to folder."""
    image, mask, _ = generate(seed, size, diagnosis=diagnosis)
    Image.fromarray(image).save(os.path.join(folder, "images", f"{stem}.jpg"), quality=92)
    Image.fromarray(mask.astype(np.uint8) * 255).save(os.path.join(folder, "masks", f"{stem}.png"))
    return {"stem": stem, "image": f"images/{stem}.jpg", "mask": f"masks/{stem}.png",
            "diagnosis": diagnosis}


@pytest.fixture(scope="module")
def synthetic_split(tmp_path_factory):
    """A split JSON of 6 train and 4 test items (one test image is not an image), plus 2 extra images.

    Sizes differ between images and are not square, so "original size" is checked for real.
    Returns: dict path (the JSON), root, split (as written), extra (folder).
    """
    root = tmp_path_factory.mktemp("split")
    for name in ("images", "masks", "extra"):
        os.makedirs(root / name)
    train = [_write_item(root, f"train{i}", (5, i), (56 + 8 * (i % 2), 72), DARK_DIAGNOSES[i % 3])
             for i in range(6)]
    test = [_write_item(root, f"test{i}", (6, i), (60, 84 - 8 * i), DARK_DIAGNOSES[i]) for i in range(3)]
    (root / "images" / "broken.jpg").write_bytes(b"this is not a jpeg")
    Image.fromarray(np.zeros((48, 40), np.uint8)).save(root / "masks" / "broken.png")
    test.append({"stem": "broken", "image": "images/broken.jpg", "mask": "masks/broken.png",
                 "diagnosis": "melanoma"})
    for i, size in enumerate(((50, 66), (70, 58))):
        Image.fromarray(generate((8, i), size, diagnosis="melanoma")[0]).save(root / "extra" / f"extra{i}.png")
    split = {"train": train, "test": test}
    path = root / "split.json"
    path.write_text(json.dumps(split))
    return {"path": str(path), "root": str(root), "split": split, "extra": str(root / "extra")}


@pytest.fixture(scope="module")
def unet_run(synthetic_split, tmp_path_factory):
    """The unet command at --size 64 --epochs 1 (one step: 6 images, batch 8). Returns (status, out)."""
    out = str(tmp_path_factory.mktemp("unet"))
    status = baselines.main(["unet", "--split", synthetic_split["path"], "--out", out, "--size", "64",
                             "--epochs", "1", "--threads", "1", "--images", synthetic_split["extra"]])
    return status, out


@pytest.fixture(scope="module")
def otsu_run(synthetic_split, tmp_path_factory):
    """The otsu command on the synthetic split. Returns (status, out)."""
    out = str(tmp_path_factory.mktemp("otsu"))
    status = baselines.main(["otsu", "--split", synthetic_split["path"], "--out", out])
    return status, out


def readable_test_items(synthetic_split):
    return [item for item in synthetic_split["split"]["test"] if item["stem"] != "broken"]


def original_size(synthetic_split, relative_path):
    with Image.open(os.path.join(synthetic_split["root"], relative_path)) as image:
        return image.size


# ------------------------------------------------------------ mask helpers

def test_keep_largest_component_keeps_the_biggest_blob():
    mask = np.zeros((8, 10), bool)
    mask[1:4, 1:4] = True       # 9 pixels
    mask[5:7, 6:8] = True       # 4 pixels
    expected = np.zeros_like(mask)
    expected[1:4, 1:4] = True
    np.testing.assert_array_equal(baselines.keep_largest_component(mask), expected)
    assert not baselines.keep_largest_component(np.zeros((8, 10), bool)).any()


def test_fill_holes_fills_enclosed_holes_only():
    ring = np.zeros((9, 9), bool)
    ring[1:8, 1:8] = True
    ring[3:6, 3:6] = False      # an enclosed hole
    bay = np.zeros((9, 9), bool)
    bay[0:6, 2:7] = True
    bay[0:3, 4] = False         # a notch open to the image border: not a hole
    assert baselines.fill_holes(ring)[1:8, 1:8].all()
    np.testing.assert_array_equal(baselines.fill_holes(bay), bay)


# --------------------------------------------------------------------- Otsu

def test_otsu_mask_finds_dark_synthetic_lesions():
    scores = []
    for diagnosis in DARK_DIAGNOSES:
        for seed in range(6):
            image, mask, _ = generate((11, seed), (96, 128), diagnosis=diagnosis)
            prediction = baselines.otsu_mask(image)
            assert prediction.shape == mask.shape and prediction.dtype == bool
            scores.append(jaccard(mask, prediction))
    assert np.mean(scores) > 0.6, np.round(scores, 2)


def test_otsu_mask_keeps_the_central_lesion_and_drops_vignette_and_hair():
    shape = (240, 320)
    central = disc(shape, (132, 176), 28)
    larger_off_centre = disc(shape, (64, 84), 40)
    luminance = np.full(shape, 200.0)
    luminance[central | larger_off_centre] = 130.0                  # light-brown lesions
    luminance[baselines.normalised_radius(*shape) > 1.05] = 10.0     # black dermoscope corners
    luminance[:, 200:202] = 40.0                                      # a hair through the lesion edge
    prediction = baselines.otsu_mask(grey_image(luminance))
    assert jaccard(central, prediction) > 0.85
    assert not (prediction & larger_off_centre).any()
    assert not prediction[0, 0] and not prediction[-1, -1]


def test_otsu_mask_fills_a_lesion_with_a_light_centre():
    shape = (100, 100)
    lesion = disc(shape, (50, 50), 30)
    luminance = np.full(shape, 210.0)
    luminance[lesion] = 60.0
    luminance[disc(shape, (50, 50), 12)] = 205.0        # regression area as light as the skin
    assert jaccard(lesion, baselines.otsu_mask(grey_image(luminance))) > 0.9


def test_otsu_mask_of_a_flat_image_is_empty():
    assert not baselines.otsu_mask(np.full((40, 50, 3), 128, np.uint8)).any()


# -------------------------------------------------------------------- U-Net

def test_unet_maps_images_to_probabilities_of_the_same_size():
    model = baselines.build_unet(64)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    probabilities = np.asarray(model(images, training=False))
    assert probabilities.shape == (2, 64, 64, 1)
    assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0
    with pytest.raises(ValueError, match="multiple of 16"):
        baselines.build_unet(72)


def test_dice_and_loss_on_hand_worked_masks():
    truth = np.zeros((1, 4, 4, 1), np.float32)
    truth[0, 0, :, 0] = 1.0                     # 4 lesion pixels
    half_right = np.zeros_like(truth)
    half_right[0, 0, :2, 0] = 1.0               # 2 of them ...
    half_right[0, 3, :2, 0] = 1.0               # ... and 2 wrong pixels
    dice = float(np.asarray(baselines.dice_per_image(truth, half_right))[0])
    assert dice == pytest.approx((2 * 2 + 1) / (4 + 4 + 1))
    perfect = float(baselines.bce_dice_loss(truth, truth))
    inverted = float(baselines.bce_dice_loss(truth, 1.0 - truth))
    assert perfect < 0.01 and inverted > 1.5


def test_train_unet_stops_when_the_minutes_are_spent():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    masks = (rng.random((12, 32, 32)) > 0.5).astype(np.uint8)
    from skinlesion.augment import DermoscopyAugmentation
    result = baselines.train_unet(baselines.build_unet(32), images, masks, DermoscopyAugmentation(seed=0),
                                  minutes=1e-6, max_epochs=5)
    assert result["steps"] == 1 and result["stopped_by"] == "minutes"
    assert result["epochs"] == 0 and not result["history"][0]["complete"]


# ---------------------------------------------------------------- commands

def test_unet_command_writes_masks_at_the_original_size(unet_run, synthetic_split):
    status, out = unet_run
    assert status == 0
    for item in readable_test_items(synthetic_split):
        with Image.open(os.path.join(out, "masks", f"{item['stem']}_segmentation.png")) as mask:
            assert mask.mode == "L"
            assert mask.size == original_size(synthetic_split, item["image"])
            assert set(np.unique(np.asarray(mask))) <= {0, 255}
            components, _ = cv2.connectedComponents((np.asarray(mask) > 0).astype(np.uint8))
            assert components - 1 <= 1                  # one lesion per image, or none
    assert not os.path.exists(os.path.join(out, "masks", "broken_segmentation.png"))
    for name in ("extra0", "extra1"):
        with Image.open(os.path.join(out, "extra", "masks", f"{name}_segmentation.png")) as mask:
            assert mask.size == original_size(synthetic_split, f"extra/{name}.png")


def test_unet_command_scores_times_and_saves_weights(unet_run):
    status, out = unet_run
    assert status == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert 0.0 <= metrics["segmentation"]["jaccard"] <= 1.0
    assert metrics["images"] == 3
    rows = list(csv.DictReader(open(os.path.join(out, "per_image.csv"))))
    assert sorted(row["image"] for row in rows) == ["test0", "test1", "test2"]
    timing = json.load(open(os.path.join(out, "timing.json")))
    assert (timing["epochs"], timing["steps"], timing["stopped_by"]) == (1, 1, "epochs")
    assert timing["train_seconds"] > 0 and timing["predict_seconds_per_image"] > 0
    assert timing["predict_images"] == 3 and timing["extra_images"] == 2
    assert timing["skipped_count"] == 1 and timing["skipped"]["test"][0]["stem"] == "broken"
    model = baselines.build_unet(64)
    model.load_weights(os.path.join(out, baselines.WEIGHTS_NAME))


def test_otsu_command_scores_against_the_split_truths(otsu_run, synthetic_split):
    status, out = otsu_run
    assert status == 0
    expected = []
    for item in readable_test_items(synthetic_split):
        with Image.open(os.path.join(synthetic_split["root"], item["mask"])) as truth:
            truth = np.asarray(truth) > 128
        with Image.open(os.path.join(out, "masks", f"{item['stem']}_segmentation.png")) as prediction:
            expected.append(jaccard(truth, np.asarray(prediction) > 128))
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["images"] == 3
    assert metrics["missing"] == ["broken_segmentation.png"]   # the unreadable image stays visible
    assert metrics["segmentation"]["jaccard"] == pytest.approx(np.mean(expected))
    assert metrics["segmentation"]["jaccard"] > 0.5
    with open(os.path.join(out, "per_image.csv")) as handle:
        assert next(csv.reader(handle))[:3] == ["image", "jaccard", "threshold_jaccard"]
    timing = json.load(open(os.path.join(out, "timing.json")))
    assert timing["method"] == "otsu" and timing["skipped_count"] == 1


def test_a_missing_split_file_is_reported_not_raised(tmp_path, capsys):
    status = baselines.main(["otsu", "--split", str(tmp_path / "nope.json"), "--out", str(tmp_path / "out")])
    assert status == 2
    assert "nope.json" in capsys.readouterr().err


def test_cross_dataset_mask_reading_and_otsu_agreement(tmp_path):
    """bench/cross_dataset: each predicted mask read once; agreement is 1 on Otsu's own mask, 0 beside it."""
    from bench import cross_dataset
    image, mask = generate(11, (96, 96), diagnosis="melanoma")[:2]
    images, masks_dir = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks_dir.mkdir()
    for stem in ("a", "b", "c"):
        Image.fromarray(image).save(images / f"{stem}.png")
    reference = baselines.otsu_mask(image)
    assert reference.any() and not reference.all()
    Image.fromarray((reference * 255).astype(np.uint8)).save(masks_dir / "a_segmentation.png")
    Image.fromarray((~reference * 255).astype(np.uint8)).save(masks_dir / "b_segmentation.png")
    (masks_dir / "notes.txt").write_text("not a mask")
    masks = cross_dataset.read_predicted_masks(str(masks_dir))
    assert sorted(masks) == ["a", "b"] and masks["a"].dtype == bool
    np.testing.assert_array_equal(masks["a"], reference)
    scores = cross_dataset.otsu_agreement(str(images), masks, ["a.png", "b.png", "c.png"])
    np.testing.assert_allclose(scores, [1.0, 0.0])  # c has no predicted mask: left out


# --------------------------------------------------------------------------- bench/classifier.py: pooled folds

def write_scored(folder, names, truth, probs, class_names):
    """An evaluation folder as --mode evaluate writes it: probabilities.csv and per_image.csv."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "probabilities.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image"] + class_names)
        writer.writerows([[n] + [f"{p:.6f}" for p in row] for n, row in zip(names, probs)])
    with open(os.path.join(folder, "per_image.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "truth", "predicted"])
        writer.writerows([[n, t, class_names[int(np.argmax(row))]] for n, t, row in zip(names, truth, probs)])


def test_pooled_folds_score_the_out_of_fold_predictions_as_one_set(tmp_path):
    from bench import classifier as bench_classifier
    from skinlesion import scoring
    classes = ["common_nevus", "atypical_nevus", "melanoma"]
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 60)
    probs = rng.dirichlet([1, 1, 1], 60) + np.eye(3)[truth] * rng.random((60, 1))
    probs /= probs.sum(axis=1, keepdims=True)
    names = [f"IMD{i:03d}" for i in range(60)]
    folders = []
    for k in range(3):
        at = slice(20 * k, 20 * (k + 1))
        folders.append(str(tmp_path / f"fold{k}"))
        write_scored(folders[-1], names[at], [classes[t] for t in truth[at]], probs[at], classes)
    pooled = bench_classifier.pooled_row(folders, "melanoma", resamples=200)
    expected = scoring.score_classification(truth, probs, classes)
    assert pooled["images"] == 60
    assert pooled["auc"] == pytest.approx(expected["auc"]["melanoma"], abs=1e-5)
    assert pooled["balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"], abs=1e-5)
    low, high = pooled["auc_95"]
    assert low < pooled["auc"] < high
    # A fold scored twice (overlapping test subsets) is refused, not counted twice.
    with pytest.raises(ValueError, match="disjoint"):
        bench_classifier.pooled_row(folders + folders[:1], "melanoma", resamples=10)
