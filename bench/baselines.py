#!/usr/bin/env python3
"""The two PH2 benchmark baselines: a classical Otsu segmenter and the seed U-Net.

    python bench/ph2_split.py --out logs/ph2/split.json
    python bench/baselines.py otsu --split logs/ph2/split.json --out logs/ph2/otsu
    python bench/baselines.py unet --split logs/ph2/split.json --out logs/ph2/unet --minutes 50

otsu  Gaussian-blurred luminance, Otsu threshold (the lesion is the darker
      side), morphological opening and closing, the component nearest the
      image centre (dark vignette corners left out), holes filled. No training.
unet  a 4-level U-Net (32-64-128-256 filters, bottleneck 512, transposed-conv
      decoder with skip concatenation, sigmoid output), binary cross-entropy +
      soft Dice, Adam 1e-3, batch 8, images resized (not cropped) to --size,
      DermoscopyAugmentation; trains on the split's "train" list until
      --minutes of wall clock are spent (checked after every step) or --epochs
      are done. Prediction: probability resized back to the image, > 0.5,
      largest connected component kept.

Both write, in --out: masks/<stem>_segmentation.png (0/255, original size) for
every image of --subset (default test), extra/masks/ for --images, truth/
(the subset's truth masks, ISIC-named), timing.json, and then score with
``lesions.py --mode evaluate --truth OUT/truth --predictions OUT/masks --out
OUT`` (metrics.json, per_image.csv, a table on stdout). unet also writes
unet.weights.h5. An unreadable image or mask is skipped with one log line and
counted in timing.json (which also records the machine); an unreadable test
image whose truth is readable also shows in metrics.json under "missing".
"""
import argparse
import json
import logging
import os
import sys
import time

import cv2
import numpy as np
from PIL import Image

if __package__:  # imported as bench.baselines
    from . import common
else:  # run as a script: bench/ is sys.path[0]
    import common

import lesions  # noqa: E402  (common puts the repository on sys.path)
from mrcnn.dataset import read_image_rgb  # noqa: E402
from skinlesion.inference import list_images  # noqa: E402
from skinlesion.layouts import read_mask_bool  # noqa: E402

log = logging.getLogger("baselines")

WEIGHTS_NAME = "unet.weights.h5"
BATCH_SIZE = 8
LEARNING_RATE = 1e-3
UNET_FILTERS = (32, 64, 128, 256)
UNET_BOTTLENECK = 512
PROBABILITY_THRESHOLD = 0.5

# Otsu baseline: all sizes are fractions of the working image's long side, so
# the method behaves the same on PH2 (765 px) and ISIC (up to 6000 px) images.
OTSU_WORKING_SIDE = 512         # images are shrunk to at most this long side first
OTSU_BLUR_SIGMA = 0.006         # Gaussian blur: hides hairs and pigment network texture
OTSU_OPEN_RADIUS = 0.008        # opening: removes hairs and specks the blur left
OTSU_CLOSE_RADIUS = 0.03        # closing: joins a lesion's pieces, smooths its border
OTSU_CENTRAL_RADIUS = 0.9       # the threshold is learnt inside this normalised radius
OTSU_MIN_AREA = 0.005           # components below this share of the image are specks


class BaselineError(Exception):
    """An error in the user's input: printed as one line, exit status 2."""


# ------------------------------------------------------------------ the split

def read_split(path):
    """Read a split JSON (bench/ph2_split.py) as {"train": [...], "test": [...], ...}.

    Relative "image" / "mask" paths are taken relative to the JSON's folder.
    Raises BaselineError naming the file and field when it is not usable.
    """
    try:
        with open(path) as handle:
            split = json.load(handle)
    except OSError as error:
        raise BaselineError(f"--split {path}: cannot read ({error.strerror}); "
                            f"write one with bench/ph2_split.py --out {path}") from None
    except json.JSONDecodeError as error:
        raise BaselineError(f"--split {path}: not JSON ({error})") from None
    base = os.path.dirname(os.path.abspath(path))
    for subset in ("train", "test"):
        items = split.get(subset)
        if not isinstance(items, list):
            raise BaselineError(f"--split {path}: no '{subset}' list (expected bench/ph2_split.py's "
                                f"format: {{\"train\": [{{\"stem\", \"image\", \"mask\"}}...], \"test\": [...]}})")
        for index, item in enumerate(items):
            missing = [key for key in ("stem", "image", "mask") if key not in item]
            if missing:
                raise BaselineError(f"--split {path}: {subset}[{index}] lacks {', '.join(missing)}")
            for key in ("image", "mask"):
                item[key] = os.path.join(base, item[key])
    return split


def read_pair(item):
    """The image and truth mask of one split item, or None (logged) when either is unreadable.

    item: {"stem", "image", "mask"}.
    Returns: (image uint8 [H, W, 3], mask bool [H, W]) or (None, reason str).
    """
    try:
        image = read_image_rgb(item["image"])
        mask = read_mask_bool(item["mask"])
    except ValueError as error:
        log.warning("skipped %s: %s", item["stem"], error)
        return None, str(error)
    if mask.shape != image.shape[:2]:
        reason = (f"{item['mask']}: mask size {mask.shape[1]}x{mask.shape[0]} differs from the "
                  f"image's {image.shape[1]}x{image.shape[0]}")
        log.warning("skipped %s: %s", item["stem"], reason)
        return None, reason
    return (image, mask), None


# ------------------------------------------------------------- mask helpers

def keep_largest_component(mask):
    """The largest 8-connected component of a mask (the one-lesion rule).

    mask: bool [H, W]. Returns: bool [H, W]; empty when the mask is empty.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, dtype=bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest


def fill_holes(mask):
    """A mask with every enclosed background region filled.

    mask: bool [H, W]. Returns: bool [H, W].
    """
    padded = np.pad(mask.astype(np.uint8), 1)
    outside = padded.copy()
    # Flood the background from the padding frame: what it cannot reach is a hole.
    flood_mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(outside, flood_mask, (0, 0), 2)
    return (outside != 2)[1:-1, 1:-1]


def write_mask(path, mask):
    """Write a mask as an ISIC segmentation PNG (mode L, 0/255).

    mask: bool [H, W].
    """
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def disk(radius_px):
    """An elliptical structuring element of the given radius (at least 1 px).

    Returns: uint8 [2r+1, 2r+1].
    """
    radius_px = max(1, int(round(radius_px)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1, 2 * radius_px + 1))


# -------------------------------------------------------------- Otsu baseline

def normalised_radius(height, width):
    """Elliptical radius of each pixel from the image centre: 1.0 on the inscribed ellipse.

    Returns: float32 [H, W]; the corners are at sqrt(2).
    """
    rows = (np.arange(height, dtype=np.float32) + 0.5 - height / 2) / (height / 2)
    cols = (np.arange(width, dtype=np.float32) + 0.5 - width / 2) / (width / 2)
    return np.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2)


def vignette_mask(luminance, threshold, radius):
    """The dark corners of a dermoscope's circular field of view.

    luminance: float32 [H, W] (blurred); threshold: the lesion / skin cut;
    radius: normalised_radius() of the image, float32 [H, W].
    The vignette starts at the smallest radius beyond the inscribed ellipse
    whose ring is mostly darker than the threshold; images without a
    vignette (bright corners) get an empty mask.
    Returns: bool [H, W].
    """
    edges = np.linspace(1.0, float(radius.max()) + 1e-3, 12)
    for inner, outer in zip(edges[:-1], edges[1:]):
        ring = (radius >= inner) & (radius < outer)
        if ring.any() and np.median(luminance[ring]) < threshold:
            return radius >= inner
    return np.zeros(luminance.shape, dtype=bool)


def central_component(mask):
    """The component of a mask nearest the image centre.

    mask: bool [H, W].
    Specks (< OTSU_MIN_AREA of the image) and components holding an image
    corner pixel (a vignette corner that vignette_mask did not catch) lose to
    any other component; among the rest, the one whose nearest pixel is
    closest to the centre wins (a lesion over the centre has distance 0), the
    larger on a tie.
    Returns: bool [H, W]; empty when the mask is empty.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, dtype=bool)
    height, width = mask.shape
    rows, cols = np.mgrid[0:height, 0:width]
    distance = np.hypot(rows + 0.5 - height / 2, cols + 0.5 - width / 2)
    corner_labels = {int(labels[r, c]) for r in (0, height - 1) for c in (0, width - 1)}
    ranking = []
    for label in range(1, count):
        area = int(stats[label, cv2.CC_STAT_AREA])
        unlikely = area < OTSU_MIN_AREA * mask.size or label in corner_labels
        ranking.append((unlikely, float(distance[labels == label].min()), -area, label))
    return labels == min(ranking)[-1]


def otsu_mask(image_rgb):
    """Classical lesion segmentation: blurred luminance, Otsu cut, clean-up, central component.

    image_rgb: uint8 [H, W, 3].
    The threshold is Otsu's over the central ellipse (so the dark vignette
    corners do not pull it); the darker side is the lesion. The vignette
    corners are then cut away, an opening removes hairs and specks, a
    closing joins the lesion's pieces, the component nearest the centre is
    kept (central_component) and its holes are filled.
    Returns: bool [H, W]; empty when no pixel is darker than the cut.
    """
    height, width = image_rgb.shape[:2]
    scale = min(1.0, OTSU_WORKING_SIDE / max(height, width))
    small = image_rgb if scale == 1.0 else cv2.resize(
        image_rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
        interpolation=cv2.INTER_AREA)
    side = max(small.shape[:2])
    luminance = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    luminance = cv2.GaussianBlur(luminance, (0, 0), max(0.5, OTSU_BLUR_SIGMA * side))
    radius = normalised_radius(*luminance.shape)
    central = luminance[radius <= OTSU_CENTRAL_RADIUS]
    if central.size == 0 or float(central.max() - central.min()) < 1.0:
        return np.zeros((height, width), dtype=bool)  # a flat image has no lesion to find
    central_u8 = np.clip(np.round(central), 0, 255).astype(np.uint8).reshape(-1, 1)
    threshold, _ = cv2.threshold(central_u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = luminance <= threshold
    vignette = vignette_mask(luminance, threshold, radius)
    dark &= ~vignette
    dark = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_OPEN, disk(OTSU_OPEN_RADIUS * side))
    dark = cv2.morphologyEx(dark, cv2.MORPH_CLOSE, disk(OTSU_CLOSE_RADIUS * side)).astype(bool)
    # The closing can grow back into the vignette: cut it again.
    lesion = fill_holes(central_component(dark & ~vignette))
    if scale != 1.0:
        lesion = cv2.resize(lesion.astype(np.float32), (width, height),
                            interpolation=cv2.INTER_LINEAR) > 0.5
    return lesion


# -------------------------------------------------------------- U-Net baseline

def resize_image_square(image, size):
    """Resize (not crop) an image to a square.

    image: uint8 [H, W, 3]. Returns: uint8 [size, size, 3].
    """
    shrinking = image.shape[0] * image.shape[1] > size * size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def resize_mask_square(mask, size):
    """Resize (not crop) a mask to a square, keeping it binary.

    mask: bool [H, W]. Returns: uint8 [size, size], 0/1.
    """
    resized = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return (resized > 0.5).astype(np.uint8)


def conv_block(features, filters, name):
    """Two 3x3 convolutions, each followed by batch norm and ReLU.

    features: [B, H, W, C]. Returns: [B, H, W, filters].
    """
    import keras
    for index in (1, 2):
        features = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                       name=f"{name}_conv{index}")(features)
        features = keras.layers.BatchNormalization(name=f"{name}_bn{index}")(features)
        features = keras.layers.Activation("relu", name=f"{name}_relu{index}")(features)
    return features


def build_unet(size, filters=UNET_FILTERS, bottleneck=UNET_BOTTLENECK):
    """The seed U-Net: 4 down-sampling levels, a bottleneck, a symmetric decoder.

    size: input side in pixels, a multiple of 2 ** len(filters) (16).
    Input: float32 [B, size, size, 3], RGB 0..255 (scaled to 0..1 inside).
    Output: float32 [B, size, size, 1], lesion probability (sigmoid).
    Encoder level i: conv_block(filters[i]) then 2x2 max pooling; decoder
    level i: 2x2 stride-2 transposed conv to filters[i], concatenation with
    the encoder's level-i features, conv_block(filters[i]).
    """
    import keras
    levels = 2 ** len(filters)
    if size < levels or size % levels:
        raise ValueError(f"U-Net size {size}: must be a positive multiple of {levels} "
                         f"({len(filters)} halvings), e.g. 224 or 256")
    images = keras.Input((size, size, 3), name="images")
    features = keras.layers.Rescaling(1.0 / 255.0, name="scale")(images)
    skips = []
    for level, level_filters in enumerate(filters):
        features = conv_block(features, level_filters, f"down{level}")
        skips.append(features)
        features = keras.layers.MaxPooling2D(2, name=f"down{level}_pool")(features)
    features = conv_block(features, bottleneck, "bottleneck")
    for level in reversed(range(len(filters))):
        features = keras.layers.Conv2DTranspose(filters[level], 2, strides=2,
                                                name=f"up{level}_transpose")(features)
        features = keras.layers.Concatenate(name=f"up{level}_concat")([features, skips[level]])
        features = conv_block(features, filters[level], f"up{level}")
    probabilities = keras.layers.Conv2D(1, 1, activation="sigmoid", name="lesion")(features)
    return keras.Model(images, probabilities, name="unet_seed")


def dice_per_image(masks, probabilities, smooth=1.0):
    """Soft Dice of each image (hard Dice when probabilities are 0/1).

    masks: float [B, H, W, 1] truth 0/1; probabilities: float [B, H, W, 1].
    smooth keeps an empty truth with an empty prediction at 1.
    Returns: float [B].
    """
    from keras import ops
    overlap = ops.sum(masks * probabilities, axis=(1, 2, 3))
    total = ops.sum(masks, axis=(1, 2, 3)) + ops.sum(probabilities, axis=(1, 2, 3))
    return (2.0 * overlap + smooth) / (total + smooth)


def bce_dice_loss(masks, probabilities):
    """Binary cross-entropy plus soft-Dice loss (1 - Dice), both averaged over the batch.

    masks: float [B, H, W, 1] truth 0/1; probabilities: float [B, H, W, 1].
    Returns: float scalar.
    """
    import keras
    from keras import ops
    cross_entropy = ops.mean(keras.losses.binary_crossentropy(masks, probabilities))
    return cross_entropy + 1.0 - ops.mean(dice_per_image(masks, probabilities))


def make_train_step(model, optimizer, size):
    """A compiled training step: forward, bce_dice_loss, Adam update.

    Returns: function(images float32 [B, size, size, 3] 0..255, masks float32
        [B, size, size, 1] 0/1) -> (loss scalar, mean hard Dice scalar).
    """
    import tensorflow as tf
    from keras import ops
    optimizer.build(model.trainable_variables)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32),
                                  tf.TensorSpec([None, size, size, 1], tf.float32)])
    def train_step(images, masks):
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            loss = bce_dice_loss(masks, probabilities)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        hard = ops.cast(probabilities > PROBABILITY_THRESHOLD, "float32")
        return loss, ops.mean(dice_per_image(masks, hard))

    return train_step


def augmented_batch(images, masks, indices, augmentation):
    """One training batch, each pair passed through the augmentation.

    images: uint8 [N, S, S, 3]; masks: uint8 [N, S, S] 0/1; indices: int [B].
    augmentation: DermoscopyAugmentation (moves image and mask together).
    Returns: (float32 [B, S, S, 3] 0..255, float32 [B, S, S, 1] 0/1).
    """
    batch_images, batch_masks = [], []
    for index in indices:
        out = augmentation(image=images[index], masks=[masks[index]])
        batch_images.append(out["image"])
        batch_masks.append(out["masks"][0])
    return (np.stack(batch_images).astype(np.float32),
            np.stack(batch_masks).astype(np.float32)[..., None])


def train_unet(model, images, masks, augmentation, minutes, max_epochs=None, seed=0,
               batch_size=BATCH_SIZE):
    """Train until `minutes` of wall clock are spent (checked after each step) or max_epochs end.

    model: build_unet(S); images: uint8 [N, S, S, 3]; masks: uint8 [N, S, S] 0/1.
    Logs one line per epoch (loss, hard Dice, seconds).
    Returns: {"train_seconds", "epochs" (complete), "steps", "stopped_by":
        "minutes" | "epochs", "history": [{"epoch", "loss", "dice",
        "seconds", "steps", "complete"}]}.
    """
    import keras
    size = images.shape[1]
    train_step = make_train_step(model, keras.optimizers.Adam(LEARNING_RATE), size)
    order_rng = np.random.default_rng(seed)
    budget_seconds = minutes * 60.0
    start = time.monotonic()
    history, steps, stopped_by, epoch = [], 0, "epochs", 0
    while max_epochs is None or epoch < max_epochs:
        epoch += 1
        epoch_start = time.monotonic()
        order = order_rng.permutation(len(images))
        losses, dices, out_of_time = [], [], False
        for first in range(0, len(order), batch_size):
            batch = augmented_batch(images, masks, order[first:first + batch_size], augmentation)
            loss, dice = train_step(*batch)
            losses.append(float(loss))
            dices.append(float(dice))
            steps += 1
            if time.monotonic() - start >= budget_seconds:
                out_of_time = True
                break
        steps_per_epoch = -(-len(order) // batch_size)
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "dice": float(np.mean(dices)),
                  "seconds": round(time.monotonic() - epoch_start, 2), "steps": len(losses),
                  "complete": len(losses) == steps_per_epoch}
        history.append(record)
        log.info("epoch %d%s: loss %.4f  dice %.4f  %.1f s  (%d/%d steps)", epoch,
                 f"/{max_epochs}" if max_epochs else "", record["loss"], record["dice"],
                 record["seconds"], record["steps"], steps_per_epoch)
        if out_of_time:
            stopped_by = "minutes"
            log.info("stopped: the %.1f-minute budget is spent", minutes)
            break
    return {"train_seconds": round(time.monotonic() - start, 2),
            "epochs": sum(record["complete"] for record in history), "steps": steps,
            "stopped_by": stopped_by, "history": history}


def unet_segmenter(model, size):
    """A function image -> lesion mask for a trained U-Net.

    The image is resized to the model's square, its probability map resized
    back to the image, cut at 0.5 and reduced to its largest component.
    Returns: function(uint8 [H, W, 3]) -> bool [H, W].
    """
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    def forward(images):
        return model(images, training=False)

    def segment(image):
        square = resize_image_square(image, size).astype(np.float32)[None]
        probability = forward(square).numpy()[0, :, :, 0]
        probability = cv2.resize(probability, (image.shape[1], image.shape[0]),
                                 interpolation=cv2.INTER_LINEAR)
        return keep_largest_component(probability > PROBABILITY_THRESHOLD)

    return segment


def load_training_set(items, size):
    """Read and resize the training pairs, skipping unreadable ones.

    items: split entries {"stem", "image", "mask"}.
    Returns: (images uint8 [N, size, size, 3], masks uint8 [N, size, size] 0/1,
              skipped [{"stem", "reason"}]).
    """
    images, masks, skipped = [], [], []
    for item in items:
        pair, reason = read_pair(item)
        if pair is None:
            skipped.append({"stem": item["stem"], "reason": reason})
            continue
        images.append(resize_image_square(pair[0], size))
        masks.append(resize_mask_square(pair[1], size))
    if not images:
        raise BaselineError(f"no readable training pair among {len(items)} (see the lines above)")
    return np.stack(images), np.stack(masks), skipped


# ------------------------------------------------------------ outputs, scoring

def clear_outputs(folder):
    """Make an output mask folder and remove the *_segmentation.png a previous run left there."""
    os.makedirs(folder, exist_ok=True)
    stale = [name for name in os.listdir(folder) if name.endswith("_segmentation.png")]
    for name in stale:
        os.remove(os.path.join(folder, name))
    if stale:
        log.info("%s: removed %d mask(s) of a previous run", folder, len(stale))


def segment_items(segment, items, masks_dir, truth_dir=None):
    """Segment each item's image and write its ISIC mask (and its truth, if asked).

    segment: function(uint8 [H, W, 3]) -> bool [H, W]; items: [{"stem",
    "image"[, "mask"]}]. An unreadable image is skipped with one log line;
    its truth is still written, so the scorer lists it as missing. An
    unreadable truth (or one of another size) leaves that image unscored.
    Returns: {"images": count written, "seconds": [per-image segment seconds],
              "skipped": [{"stem", "reason"}]}.
    """
    seconds, skipped = [], []
    for item in items:
        truth_path = (os.path.join(truth_dir, f"{item['stem']}_segmentation.png")
                      if truth_dir is not None else None)
        truth = None
        if truth_path:
            try:
                truth = read_mask_bool(item["mask"])
            except ValueError as error:
                log.warning("%s: truth not scored: %s", item["stem"], error)
                skipped.append({"stem": item["stem"], "reason": f"truth: {error}"})
        try:
            image = read_image_rgb(item["image"])
        except ValueError as error:
            log.warning("skipped %s: %s", item["stem"], error)
            skipped.append({"stem": item["stem"], "reason": str(error)})
            if truth is not None:
                write_mask(truth_path, truth)
            continue
        if truth is not None and truth.shape != image.shape[:2]:
            reason = (f"{item['mask']}: mask size {truth.shape[1]}x{truth.shape[0]} differs from "
                      f"the image's {image.shape[1]}x{image.shape[0]}")
            log.warning("%s: truth not scored: %s", item["stem"], reason)
            skipped.append({"stem": item["stem"], "reason": f"truth: {reason}"})
        elif truth is not None:
            write_mask(truth_path, truth)
        start = time.perf_counter()
        mask = segment(image)
        seconds.append(time.perf_counter() - start)
        write_mask(os.path.join(masks_dir, f"{item['stem']}_segmentation.png"), mask)
    return {"images": len(seconds), "seconds": seconds, "skipped": skipped}


def extra_items(spec):
    """Split-style items for the --images files: [{"stem", "image"}]."""
    try:
        paths = list_images(spec)
    except FileNotFoundError as error:
        raise BaselineError(str(error).replace("--image ", "--images ", 1)) from None
    return [{"stem": os.path.splitext(os.path.basename(path))[0], "image": path} for path in paths]


def predict_and_score(segment, args, split, timing):
    """Write masks for --subset (and --images), the subset's truths, timing.json; then score.

    segment: function(uint8 [H, W, 3]) -> bool [H, W]; timing: dict that
    receives the prediction figures and is written to OUT/timing.json.
    Scoring is lesions.py --mode evaluate --truth OUT/truth --predictions
    OUT/masks --out OUT (metrics.json, per_image.csv, a table on stdout).
    """
    masks_dir, truth_dir = os.path.join(args.out, "masks"), os.path.join(args.out, "truth")
    for folder in (masks_dir, truth_dir):
        clear_outputs(folder)
    outcome = segment_items(segment, split[args.subset], masks_dir, truth_dir)
    timing.update({"subset": args.subset, "predict_images": outcome["images"],
                   "predict_seconds_per_image": (round(float(np.mean(outcome["seconds"])), 4)
                                                 if outcome["seconds"] else None)})
    timing["skipped"][args.subset] = outcome["skipped"]
    if args.images:
        extra_dir = os.path.join(args.out, "extra", "masks")
        clear_outputs(extra_dir)
        extra = segment_items(segment, extra_items(args.images), extra_dir)
        timing["extra_images"] = extra["images"]
        timing["skipped"]["extra"] = extra["skipped"]
    timing["skipped_count"] = sum(len(entries) for entries in timing["skipped"].values())
    common.write_json(os.path.join(args.out, "timing.json"), timing)
    status = lesions.main(["--mode", "evaluate", "--truth", truth_dir, "--predictions", masks_dir,
                           "--out", args.out])
    if status != 0:
        raise BaselineError(f"scoring {masks_dir} against {truth_dir} failed (status {status})")
    print(f"{timing['method']}: {outcome['images']} {args.subset} image(s) segmented, "
          f"{timing['skipped_count']} input(s) skipped; written: {args.out}/masks, "
          f"{args.out}/timing.json")


# ---------------------------------------------------------------- commands

def cmd_otsu(args, split):
    """The classical baseline: no training, otsu_mask on every image."""
    timing = {"method": "otsu", "split": os.path.abspath(args.split), "train_seconds": 0.0,
              "epochs": 0, "steps": 0, "skipped": {}}
    predict_and_score(otsu_mask, args, split, timing)


def set_threads(threads):
    """Limit TensorFlow's (and OpenCV's) thread pools; logs if TensorFlow already started."""
    import tensorflow as tf
    cv2.setNumThreads(threads)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as error:
        log.warning("--threads %d not applied to TensorFlow: %s", threads, error)


def cmd_unet(args, split):
    """The seed U-Net: train on the split's train list, save weights, predict --subset."""
    if args.threads:
        set_threads(args.threads)
    import keras
    from skinlesion.augment import DermoscopyAugmentation

    keras.utils.set_random_seed(args.seed)
    try:
        model = build_unet(args.size)
    except ValueError as error:
        raise BaselineError(f"--size {args.size}: {error}") from None
    prepare_start = time.monotonic()
    images, masks, skipped = load_training_set(split["train"], args.size)
    prepare_seconds = time.monotonic() - prepare_start
    log.info("U-Net %d px: %d training pair(s) (%d skipped), %d parameters, budget %.1f min%s",
             args.size, len(images), len(skipped), model.count_params(), args.minutes,
             f", at most {args.epochs} epoch(s)" if args.epochs else "")
    augmentation = DermoscopyAugmentation(seed=args.seed)
    # DermoscopyAugmentation seeds only its hair drawing; seed the albumentations part too.
    augmentation.compose.set_random_seed(args.seed)
    training = train_unet(model, images, masks, augmentation, args.minutes, args.epochs, args.seed)
    weights_path = os.path.join(args.out, WEIGHTS_NAME)
    model.save_weights(weights_path)
    timing = {"method": "unet", "split": os.path.abspath(args.split), "size": args.size,
              "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE, "seed": args.seed,
              "minutes": args.minutes, "max_epochs": args.epochs, "threads": args.threads,
              "train_images": int(len(images)), "prepare_seconds": round(prepare_seconds, 2),
              **training, "weights": weights_path, "skipped": {"train": skipped},
              "machine": common.machine_info(compute_dtype=keras.config.dtype_policy().compute_dtype)}
    predict_and_score(unet_segmenter(model, args.size), args, split, timing)


def parse_args(argv=None):
    """The command line: a method (otsu | unet) and its options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    commands = parser.add_subparsers(dest="method", required=True)
    for name, text in (("otsu", "classical: Otsu threshold of the blurred luminance"),
                       ("unet", "the seed U-Net, trained on the split's train list")):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--split", required=True, help="split JSON from bench/ph2_split.py")
        command.add_argument("--out", required=True, help="output folder")
        command.add_argument("--subset", default="test", choices=["train", "test"],
                             help="the split list to segment and score (default: test)")
        command.add_argument("--images", default=None,
                             help="also segment these images (file, folder or glob) into OUT/extra/masks")
        if name == "unet":
            command.add_argument("--size", type=int, default=256,
                                 help="square input side, a multiple of 16 (default 256; 224 also usual)")
            command.add_argument("--minutes", type=float, default=50.0,
                                 help="wall-clock training budget, checked after every step (default 50)")
            command.add_argument("--epochs", type=int, default=None, help="epoch cap (default: none)")
            command.add_argument("--seed", type=int, default=0, help="weights, order and augmentation seed")
            command.add_argument("--threads", type=int, default=None,
                                 help="TensorFlow intra- and inter-op threads (and OpenCV's)")
    args = parser.parse_args(argv)
    if args.method == "unet":
        if args.minutes <= 0:
            parser.error(f"--minutes {args.minutes}: must be > 0")
        if args.epochs is not None and args.epochs < 1:
            parser.error(f"--epochs {args.epochs}: must be >= 1")
        if args.threads is not None and args.threads < 1:
            parser.error(f"--threads {args.threads}: must be >= 1")
    return args


def main(argv=None):
    """Run one baseline; returns the exit status (2 on a user error, printed as one line)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        split = read_split(args.split)
        os.makedirs(args.out, exist_ok=True)
        {"otsu": cmd_otsu, "unet": cmd_unet}[args.method](args, split)
    except BaselineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
