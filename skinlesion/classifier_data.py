"""Feeding the classifier: labelled items, the segmenter, the crop cache on disk, augmented batches.

An *item* is what the classifier needs of one image: ``ClassifierItem(image_id,
load, label, name=None, criteria=None)`` with ``load()`` returning RGB uint8
[H, W, 3], ``label`` the class index (column of the scheme's class names),
``name`` the image column of probabilities.csv (default: image_id) and
``criteria`` the image's known dermoscopic criteria (skinlesion.criteria). Items come from a
LesionDataset (``dataset_items``), the synthetic generator
(``synthetic_items``) or the label-only layouts (``labelled_items``);
``load_items`` picks the reader for a dataset folder.

Crops are made once per image and segmenter checkpoint and kept on disk
(``CropCache``), so training epochs never run the Mask R-CNN again.
"""
import collections
import hashlib
import json
import logging
import math
import os
import tempfile

import keras
import numpy as np

from skinlesion.classifier import lesion_crop, model_inputs

log = logging.getLogger(__name__)

ClassifierItem = collections.namedtuple("ClassifierItem", ["image_id", "load", "label", "name", "criteria"],
                                        defaults=(None, None))


# --------------------------------------------------------------------- items
def synthetic_items(count, diagnoses, size=(64, 64), seed=0, artefacts=True, structures=False,
                    probabilities=None, crop_size=None):
    """``count`` synthetic images, balanced over ``diagnoses`` (synthetic diagnosis names).

    label i is diagnoses[i]; images are drawn by skinlesion.synthetic.generate
    with seed (seed, index), so two calls with other seeds never share an image.
    structures: draw labelled dermoscopic structures (synthetic.generate_sample)
    and give each item its criteria; probabilities overrides their odds
    (e.g. {name: 0.5 for name in synthetic_structures.STRUCTURE_NAMES});
    crop_size: with structures, each image is the crop around its true lesion
    mask (lesion_crop, margin 0.25) at this side, as a perfect segmenter gives.
    Returns [ClassifierItem]; each load() gives uint8 [size[0], size[1], 3].
    """
    from skinlesion.synthetic import generate, generate_sample
    order = np.random.default_rng([int(seed), 104729]).permutation(count)
    items = []
    for index in range(count):
        label = int(order[index] % len(diagnoses))
        key = (int(seed), index)
        name = f"synthetic:{seed}:{index}:{size[0]}x{size[1]}:{diagnoses[label]}"
        if structures:
            # Drawn once here for the criteria; the crop cache then keeps the pixels.
            sample = generate_sample(key, size, diagnosis=diagnoses[label], artefacts=artefacts,
                                     probabilities=probabilities)
            image = sample.image
            if crop_size:
                image = lesion_crop(sample.image, sample.mask, 0.25, int(crop_size))[0]
            items.append(ClassifierItem(f"{name}:structures:{crop_size}", (lambda im=image: im), label,
                                        criteria=sample.criteria))
            continue

        def load(key=key, diagnosis=diagnoses[label]):
            return generate(key, size, diagnosis=diagnosis, artefacts=artefacts)[0]
        items.append(ClassifierItem(name, load, label))
    return items


def dataset_items(dataset):
    """Items of a loaded LesionDataset: label = class_id - 1 (no background column).

    Synthetic images carry their size in the id: the same seed at another
    size is another image for the crop cache.
    """
    items = []
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        key = str(info["id"])
        if info.get("layout") == "synthetic":
            key += f":{info['height']}x{info['width']}"
        items.append(ClassifierItem(key, (lambda i=image_id: dataset.load_image(i)), int(info["class_id"]) - 1,
                                    info.get("stem"), info.get("criteria")))
    return items


def labelled_items(records):
    """Items from skinlesion.labelled.load_labelled's LabelledItem records, read by labelled.read_image."""
    from skinlesion.labelled import read_image
    return [ClassifierItem(record.image_id, (lambda r=record: read_image(r)), int(record.class_index),
                           criteria=getattr(record, "criteria", None))
            for record in records]


def load_items(path, subset, scheme, seed=0, split=(0.8, 0.1, 0.1), size=(256, 256), count=None):
    """(items, summary) of one subset of a dataset for the classifier.

    path: a dataset folder, or None / "synthetic[:N]" for the built-in set
    (size, count as LesionDataset.load). Folders load through
    skinlesion.labelled.load_labelled, which reads the label-only layouts and
    the layouts with masks alike (their subsets are LesionDataset's), and
    accepts the classifier-only schemes (melanoma, isic2019). Raises
    DatasetError / SchemeError as the readers do.
    """
    if path is None or str(path).startswith("synthetic"):
        from skinlesion import LesionDataset
        dataset = LesionDataset()
        kwargs = {"size": size, **({"count": count} if count is not None else {})}
        summary = dataset.load(path, subset, classes=scheme, seed=seed, split=split, **kwargs)
        return dataset_items(dataset), summary
    from skinlesion.labelled import load_labelled
    records, summary = load_labelled(path, subset, scheme, seed, split)
    items = labelled_items(records)
    return items, {**summary, "images": len(items)}


# ----------------------------------------------------------------- segmenter
def checkpoint_key(path):
    """What identifies a segmenter's weights for the crop cache: absolute path, mtime and size."""
    stat = os.stat(path)
    return f"{os.path.abspath(path)}|{stat.st_mtime_ns}|{stat.st_size}"


class Segmenter:
    """A saved Mask R-CNN run used for its lesion masks (skinlesion.inference.lesion_mask)."""

    def __init__(self, model, config, checkpoint):
        self.model, self.config, self.checkpoint = model, config, checkpoint
        self.key = checkpoint_key(checkpoint)

    @classmethod
    def load(cls, run):
        """The segmenter of a run folder, checkpoint or logs folder (skinlesion.runs.load_model)."""
        from skinlesion.runs import load_model
        return cls(*load_model(run))

    def lesion_mask(self, image):
        """The lesion mask bool [H, W] of image uint8 [H, W, 3] (empty when nothing is detected)."""
        from skinlesion.inference import lesion_mask
        result = self.model.detect([image])[0]
        return lesion_mask(result, float(self.config.DETECTION_MIN_CONFIDENCE))[0]


# ---------------------------------------------------------------- crop cache
class CropCache:
    """Lesion crops on disk, keyed by image id, segmenter checkpoint and crop settings.

    Files: root/<settings hash>/key.json (what the hash stands for) and one
    <image id hash>.npz per image (crop uint8 [S, S, 3], mask uint8 [S, S]
    0..255). Without a segmenter the crop is the centred square.
    ``computed`` / ``reused`` count crops made and read.
    """

    def __init__(self, root, segmenter=None, margin=0.25, size=224):
        self.segmenter, self.margin, self.size = segmenter, float(margin), int(size)
        self.key = {"segmenter": segmenter.key if segmenter is not None else "centre crop",
                    "margin": self.margin, "size": self.size}
        digest = hashlib.sha1(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        self.folder = os.path.join(root, digest)
        os.makedirs(self.folder, exist_ok=True)
        with open(os.path.join(self.folder, "key.json"), "w") as f:
            json.dump(self.key, f, indent=1)
        self.computed = self.reused = 0

    def path(self, image_id):
        return os.path.join(self.folder, hashlib.sha1(str(image_id).encode()).hexdigest()[:24] + ".npz")

    def get(self, image_id, load):
        """(crop uint8 [S, S, 3], mask float32 [S, S] in 0..1) of one image, made once.

        load: () -> RGB uint8 [H, W, 3], called only when the crop is not on
        disk yet. A damaged cache file is made again.
        """
        path = self.path(image_id)
        if os.path.exists(path):
            try:
                with np.load(path) as saved:
                    crop, mask = saved["crop"], saved["mask"]
                self.reused += 1
                return crop, mask.astype(np.float32) / 255.0
            except (OSError, ValueError, KeyError) as err:
                log.warning("crop cache %s: unreadable (%s); making it again", path, err)
        image = load()
        mask = self.segmenter.lesion_mask(image) if self.segmenter is not None else None
        crop, crop_mask, window, kind = lesion_crop(image, mask, self.margin, self.size)
        if kind == "centre" and self.segmenter is not None:
            log.info("%s: the segmenter found no lesion; using the centre crop", image_id)
        fd, partial = tempfile.mkstemp(suffix=".npz", dir=self.folder)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, crop=crop, mask=np.round(crop_mask * 255).astype(np.uint8), window=np.array(window))
        os.replace(partial, path)
        self.computed += 1
        return crop, np.round(crop_mask * 255).astype(np.float32) / 255.0

    def fill(self, items, progress=False):
        """Make every item's crop now; returns (usable items, skipped [{"file", "reason"}]).

        An image that cannot be decoded is skipped with one line naming it.
        """
        usable, skipped = [], []
        bar = keras.utils.Progbar(len(items), unit_name="crop") if progress else None
        for k, item in enumerate(items):
            try:
                self.get(item.image_id, item.load)
                usable.append(item)
            except (OSError, ValueError) as err:
                log.warning("skipped %s: %s", item.image_id, err)
                skipped.append({"file": item.image_id, "reason": str(err)})
            if bar:
                bar.update(k + 1)
        return usable, skipped

    def batch(self, items):
        """(crops uint8 [B, S, S, 3], masks float32 [B, S, S]) of a list of items."""
        pairs = [self.get(item.image_id, item.load) for item in items]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


# -------------------------------------------------------------- augmentation
def augment_crop(crop, mask, rng, jitter=0.1):
    """A random flip / 90-degree rotation of crop and mask, and a small colour change of the crop.

    crop: uint8 [S, S, 3]; mask: float [S, S]; rng: numpy Generator;
    jitter: largest relative change of brightness, contrast and each
    channel's gain. Dermoscopy has no up or right, so the eight symmetries of
    the square are all valid. Returns (uint8 [S, S, 3], float [S, S]).
    """
    turns = int(rng.integers(4))
    crop, mask = np.rot90(crop, turns), np.rot90(mask, turns)
    if rng.random() < 0.5:
        crop, mask = crop[:, ::-1], mask[:, ::-1]
    if jitter > 0:
        pixels = crop.astype(np.float32)
        mean = pixels.mean()
        contrast = 1.0 + rng.uniform(-jitter, jitter)
        gain = (1.0 + rng.uniform(-jitter, jitter)) * (1.0 + rng.uniform(-jitter / 2, jitter / 2, size=3))
        pixels = ((pixels - mean) * contrast + mean) * gain
        crop = np.clip(pixels, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(crop), np.ascontiguousarray(mask)


def class_weights(labels, num_classes):
    """Loss weight per class, inversely proportional to its count: float [K], mean 1 over present classes.

    labels: int [N]. A class without images gets 0.
    """
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


class CropSequence(keras.utils.PyDataset):
    """Training batches of cached crops: (inputs, labels int [B], sample weights float [B]).

    With criteria outputs (config.CRITERIA) labels and weights are dicts
    keyed by the model's outputs (skinlesion.classifier_criteria.batch_targets):
    the class weights apply to the diagnosis, every criterion weighs 1 and
    its unknown targets (-1) are masked by its loss.

    Shuffled each epoch; with IMBALANCE="balanced_sampling" each class is
    drawn equally often, with "class_weight" the sample weights are
    class_weights(), otherwise 1. Augmented when config.AUGMENT.
    """

    def __init__(self, config, cache, items, num_classes, seed=0):
        super().__init__(workers=1, use_multiprocessing=False)
        self.config, self.cache, self.items = config, cache, list(items)
        self.labels = np.array([item.label for item in self.items], np.int64)
        self.batch_size = int(config.BATCH_SIZE)
        self.weights = (class_weights(self.labels, num_classes) if config.IMBALANCE == "class_weight"
                        else np.ones(num_classes))
        self.seed, self.epoch = int(seed), 0
        self.steps = int(config.STEPS_PER_EPOCH) or math.ceil(len(self.items) / self.batch_size)
        from skinlesion.classifier_criteria import item_targets, outputs_of
        self.outputs = outputs_of(config)
        self.targets = item_targets(self.items, self.outputs) if self.outputs else None
        self._shuffle()

    def _shuffle(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        wanted = self.steps * self.batch_size
        if self.config.IMBALANCE == "balanced_sampling":
            per_item = 1.0 / np.bincount(self.labels)[self.labels]
            self.order = rng.choice(len(self.items), size=wanted, p=per_item / per_item.sum())
        else:
            rounds = math.ceil(wanted / len(self.items))
            self.order = np.concatenate([rng.permutation(len(self.items)) for _ in range(rounds)])[:wanted]

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        chosen = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        crops, masks = self.cache.batch([self.items[i] for i in chosen])
        if self.config.AUGMENT:
            rng = np.random.default_rng([self.seed, self.epoch, index, 1])
            pairs = [augment_crop(c, m, rng, float(self.config.COLOR_JITTER)) for c, m in zip(crops, masks)]
            crops, masks = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        labels = self.labels[chosen]
        weights = self.weights[labels].astype(np.float32)
        if not self.outputs:
            return model_inputs(self.config, crops, masks), labels, weights
        from skinlesion.classifier_criteria import DIAGNOSIS, batch_targets
        y = batch_targets(labels, self.targets[chosen], self.outputs)
        return model_inputs(self.config, crops, masks), y, {k: (weights if k == DIAGNOSIS else np.ones_like(weights))
                                                              for k in y}

    def on_epoch_end(self):
        self.epoch += 1
        self._shuffle()
