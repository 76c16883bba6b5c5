"""From detections to ISIC outputs: one lesion mask per image, class probabilities, files.

Used by ``lesions.py --mode predict`` and ``--mode evaluate``. Decoding runs in
a thread pool ahead of the model and writing runs behind it, so both cores
stay busy while the model works on the current batch.
"""
import collections
import csv
import glob
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from PIL import Image

from mrcnn.dataset import read_image_rgb
from mrcnn.visualize import draw_overlay
from skinlesion.layouts.files import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)



def list_images(spec):
    """Image files named by a file, a folder (not recursive) or a glob pattern, sorted.

    Raises FileNotFoundError naming spec when nothing matches.
    """
    if os.path.isdir(spec):
        files = [os.path.join(spec, f) for f in os.listdir(spec)
                 if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    elif os.path.isfile(spec):
        files = [spec]
    else:
        files = [f for f in glob.glob(spec) if os.path.isfile(f)]
    files = sorted(files)
    if not files:
        raise FileNotFoundError(f"--image {spec}: no image file found (a file, a folder of "
                                f"{'/'.join(IMAGE_EXTENSIONS)} files, or a glob such as 'dir/*.jpg')")
    return files


def lesion_mask(result, min_confidence):
    """The one lesion mask of an image (the ISIC task has exactly one lesion per image).

    result: a detect() dict (rois, class_ids, scores, masks [H, W, N], probs).
    Takes the top detection and unites it with every other detection above
    min_confidence whose mask overlaps it and is no larger than the top one's
    (a lesion split in pieces). A larger overlapping detection is a competing
    outline, not a piece: uniting it took a 3 % lesion to most of the image
    (PH2 IMD092, Jaccard 0.04). If the mask is empty, the top detection's box
    is used. When
    nothing reaches min_confidence, the best detection is still used and
    flagged. Returns: (mask bool [H, W], used detection indices, low_confidence
    bool); an empty mask only when there is no detection at all.
    """
    masks = result["masks"]
    scores = result["scores"]
    if len(scores) == 0:
        return np.zeros(masks.shape[:2], dtype=bool), [], False
    order = np.argsort(-scores)
    top = order[0]
    mask = masks[:, :, top].copy()
    top_area = int(mask.sum())
    used = [int(top)]
    for i in order[1:]:
        piece = masks[:, :, i]
        if scores[i] >= min_confidence and int(piece.sum()) <= top_area and np.logical_and(mask, piece).any():
            mask |= piece
            used.append(int(i))
    if not mask.any():
        # The mask head put no pixel above 0.5 inside the detected box (an
        # untrained or unsure model): the box itself is the best outline we have.
        y1, x1, y2, x2 = [int(v) for v in result["rois"][top]]
        mask[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = True
    return mask, used, bool(scores[top] < min_confidence)


def image_probabilities(result, used, class_names):
    """Class probabilities of the image from its lesion detections.

    The background column is dropped and the rest renormalised; several
    detections of one lesion are averaged weighted by score. With no
    detection: a uniform distribution. Returns float [K] over class_names[1:].
    """
    count = len(class_names) - 1
    if not used:
        return np.full(count, 1.0 / count)
    probs = np.asarray(result["probs"])[used][:, 1:]
    weights = np.asarray(result["scores"])[used][:, None]
    merged = (probs * weights).sum(axis=0) / max(weights.sum(), 1e-12)
    total = merged.sum()
    return merged / total if total > 0 else np.full(count, 1.0 / count)


# Test-time augmentation: the flips whose detections are voted with the plain image's.
TTA_FLIPS = ("horizontal", "vertical")


def flip_image(image, flip):
    """image [H, W, ...] flipped left-right ("horizontal") or top-bottom ("vertical"); its own inverse."""
    return np.ascontiguousarray(image[:, ::-1] if flip == "horizontal" else image[::-1])


def vote_lesion_masks(masks):
    """Pixel-wise majority of lesion masks.

    masks: list of bool [H, W] (the plain image's first). A pixel is lesion when
    more than half the masks say so; with an even count the plain image's mask
    breaks ties. Returns bool [H, W].
    """
    stack = np.stack(masks).astype(np.float32)
    votes = stack.mean(axis=0)
    return (votes > 0.5) | ((votes == 0.5) & masks[0])


# Coarse-to-fine: a lesion whose box is small in the image is detected again in a crop
# around it, so the model sees it at the framing it was trained on.
REFINE_CONTEXT = 2.5      # crop side = this x the longer side of the coarse lesion box
REFINE_MIN_ZOOM = 1.5     # refine only when the crop is at most 1/1.5 of the image's shorter side


def refine_window(box, image_shape, context=REFINE_CONTEXT):
    """Square crop (y1, x1, y2, x2) around a lesion box, kept inside the image.

    box: (y1, x1, y2, x2) pixels; image_shape: (H, W, ...). The side is
    context x the box's longer side, at most the image's shorter side; the
    window is centred on the box and shifted (not padded) to stay inside.
    Returns int (y1, x1, y2, x2).
    """
    H, W = int(image_shape[0]), int(image_shape[1])
    y1, x1, y2, x2 = [float(v) for v in box]
    side = int(round(min(max(y2 - y1, x2 - x1, 1.0) * context, H, W)))
    cy, cx = (y1 + y2) / 2.0, (x1 + x2) / 2.0
    top = int(np.clip(round(cy - side / 2.0), 0, H - side))
    left = int(np.clip(round(cx - side / 2.0), 0, W - side))
    return top, left, top + side, left + side


def refine_results(model, images, results, min_confidence, context=REFINE_CONTEXT, min_zoom=REFINE_MIN_ZOOM):
    """Coarse-to-fine detection: re-detect small lesions in a crop around them.

    images: list of uint8 [H, W, 3]; results: their detect() dicts. For each
    image whose lesion (``lesion_mask``) box, grown by ``context``, is at most
    1/min_zoom of the shorter side, the crop is detected again and its
    detections mapped back to the image (rois shifted, masks pasted into
    full-size [H, W, N] arrays), provided the fine pass finds a lesion that
    overlaps the coarse one; otherwise the coarse result stays. Returns (new
    results list, refined flags list of bool).
    """
    crops, where = [], []
    for k, (image, result) in enumerate(zip(images, results)):
        if len(result["scores"]) == 0:
            continue
        mask, _, _ = lesion_mask(result, min_confidence)
        ys, xs = np.nonzero(mask)
        if not len(ys):
            continue
        window = refine_window((ys.min(), xs.min(), ys.max() + 1, xs.max() + 1), image.shape, context)
        side = window[2] - window[0]
        if side * min_zoom > min(image.shape[:2]):
            continue
        crops.append(np.ascontiguousarray(image[window[0]:window[2], window[1]:window[3]]))
        where.append((k, window, mask))
    out = list(results)
    refined = [False] * len(results)
    if not crops:
        return out, refined
    fine = model.detect(crops)
    for (k, (top, left, bottom, right), coarse_mask), result in zip(where, fine):
        if len(result["scores"]) == 0:
            continue
        H, W = images[k].shape[:2]
        masks = np.zeros((H, W, result["masks"].shape[-1]), dtype=bool)
        masks[top:bottom, left:right] = result["masks"]
        fine_mask, _, _ = lesion_mask({**result, "masks": masks}, min_confidence)
        if not np.logical_and(fine_mask, coarse_mask).any():
            continue  # the crop found something else: keep the coarse lesion
        rois = np.asarray(result["rois"]).copy()
        rois[:, [0, 2]] += top
        rois[:, [1, 3]] += left
        out[k] = {**result, "rois": rois, "masks": masks}
        refined[k] = True
    return out, refined


class Predictor:
    """Runs a MaskRCNN over image files and writes the ISIC-format outputs.

    out_dir receives masks/<stem>_segmentation.png (mode L, 0/255, original
    size), overlays/<stem>.png, predictions.json and probabilities.csv.
    """

    def __init__(self, model, class_names, out_dir, min_confidence, write_overlays=True, on_result=None,
                 tta=False, refine=False):
        self.model = model
        # refine: coarse-to-fine (refine_results) on the plain image and on each flip.
        self.refine = bool(refine)
        # tta: also detect on the left-right and top-bottom flips; the lesion mask is
        # the pixel-wise majority of the three, the probabilities their mean.
        self.tta = bool(tta)
        self.class_names = list(class_names)
        self.out_dir = out_dir
        self.min_confidence = float(min_confidence)
        self.write_overlays = write_overlays
        # on_result: one callable or a list of them, each called as
        # hook(source, result, lesion_mask, record) for each image, in order.
        self.on_result = [] if on_result is None else list(on_result) if isinstance(on_result, (list, tuple)) \
            else [on_result]
        os.makedirs(os.path.join(out_dir, "masks"), exist_ok=True)
        if write_overlays:
            os.makedirs(os.path.join(out_dir, "overlays"), exist_ok=True)

    @staticmethod
    def file_sources(paths):
        """Sources for image files: [(name, path, loader)]."""
        return [(os.path.basename(p), p, (lambda p=p: read_image_rgb(p))) for p in paths]

    @staticmethod
    def dataset_sources(dataset):
        """Sources for a Dataset's images (files or generated): [(name, path or None, loader, image_id)]."""
        sources = []
        for image_id in dataset.image_ids:
            info = dataset.image_info[image_id]
            name = info.get("stem") or os.path.splitext(os.path.basename(str(info.get("path"))))[0]
            sources.append((name, info.get("path"), (lambda i=image_id: dataset.load_image(i)), int(image_id)))
        return sources

    @staticmethod
    def _read(source):
        try:
            return source[2](), None
        except (ValueError, OSError) as err:
            return None, str(err)

    def _write(self, source, image, result, flipped=()):
        """Write one image's mask and overlay; return its predictions.json record.

        flipped: [(flip name, detect() dict of the flipped image)] for test-time augmentation.
        """
        name, path = source[0], source[1]
        stem = os.path.splitext(name)[0]
        mask, used, low = lesion_mask(result, self.min_confidence)
        probabilities = image_probabilities(result, used, self.class_names)
        if flipped:
            masks, probs = [mask], [probabilities]
            for flip, other in flipped:
                other_mask, other_used, _ = lesion_mask(other, self.min_confidence)
                masks.append(flip_image(other_mask, flip))
                probs.append(image_probabilities(other, other_used, self.class_names))
            mask = vote_lesion_masks(masks)
            probabilities = np.mean(probs, axis=0)
        Image.fromarray((mask * 255).astype(np.uint8)).save(
            os.path.join(self.out_dir, "masks", f"{stem}_segmentation.png"))
        path = path if isinstance(path, str) else None
        detections = []
        for i in range(len(result["scores"])):
            y1, x1, y2, x2 = [int(v) for v in result["rois"][i]]
            class_id = int(result["class_ids"][i])
            detections.append({
                "bbox": [x1, y1, x2, y2],
                "class": self.class_names[class_id],
                "score": round(float(result["scores"][i]), 6),
                "probabilities": {name: round(float(p), 6)
                                  for name, p in zip(self.class_names, result["probs"][i])},
                "mask_area": int(result["masks"][:, :, i].sum()),
                "in_lesion_mask": i in used,
            })
        if self.write_overlays:
            captions = [f"{d['class']}: {d['score']:.2f}" for d in detections]
            overlay = draw_overlay(image, result["masks"], result["rois"], captions)
            # Fast PNG compression: Pillow's default level took 0.54 s per 6-megapixel
            # overlay in bench/speed.py, OpenCV at level 1 about 0.19 s.
            cv2.imwrite(os.path.join(self.out_dir, "overlays", f"{stem}.png"),
                        np.ascontiguousarray(overlay[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        record = {
            "image": name, "path": os.path.abspath(path) if path else None, "stem": stem,
            "width": int(image.shape[1]), "height": int(image.shape[0]),
            "detections": detections, "lesion_mask_area": int(mask.sum()),
            "low_confidence": low, "no_detection": not detections,
            # The graph's fallback (Config.DETECTION_FALLBACK): every ROI scored background,
            # so the most lesion-like one was returned; its probabilities favour background.
            "fallback": self._is_fallback(result),
            "probabilities": {name: round(float(p), 6) for name, p in zip(self.class_names[1:], probabilities)},
            # Coarse-to-fine (--refine): these detections come from a crop around the lesion.
            "refined": bool(result.get("refined", False)),
        }
        if record["fallback"]:
            log.info("%s: every region scored background; used the most lesion-like one (score %.3f), "
                     "flagged low_confidence", name, float(result["scores"][0]))
        elif low:
            log.info("%s: no detection reached %.2f; used the best one (score %.3f), flagged low_confidence",
                     name, self.min_confidence, float(np.max(result["scores"])))
        return record, mask

    def _is_fallback(self, result):
        """True when the top detection is one the model's own rule would not have kept.

        DETECTION_SCORE "class" (Matterport): its most likely class is
        background (only the graph's fallback returns such a detection);
        "foreground": its background probability is at least one half.
        """
        if len(result["scores"]) == 0:
            return False
        probs = np.asarray(result["probs"])[int(np.argmax(result["scores"]))]
        if getattr(self.model.config, "DETECTION_SCORE", "class") == "foreground":
            return bool(probs[0] >= 0.5)
        return bool(int(np.argmax(probs)) == 0)

    def run(self, sources, keep_masks=False, progress=True):
        """Predict every source (see file_sources / dataset_sources). Returns {"images": [records], "skipped": [...], "masks": {stem: mask}}.

        A file that cannot be decoded is skipped with one line and listed; the
        rest finish. Outputs are written as each batch completes.
        """
        import keras
        batch = max(1, self.model.config.BATCH_SIZE)
        records, skipped, kept_masks = [], [], {}
        bar = keras.utils.Progbar(len(sources), unit_name="image") if progress else None
        ahead = 2 * batch + 2  # decoded images held in memory at most
        # Two writer threads: encoding a full-size overlay PNG costs about as much as the
        # model's forward pass, so one writer was the bottleneck of predict (bench/speed.py).
        with ThreadPoolExecutor(max_workers=2) as readers, ThreadPoolExecutor(max_workers=2) as writers:
            decoded = {}
            pending = collections.deque()  # (future, source, result) in input order

            def collect(block):
                """Take finished writes off the front of the queue, in input order."""
                while pending and (block or pending[0][0].done()):
                    future, source, result = pending.popleft()
                    record, mask = future.result()
                    records.append(record)
                    if keep_masks:
                        kept_masks[record["stem"]] = mask
                    for hook in self.on_result:
                        hook(source, result, mask, record)

            def prefetch(upto):
                for j in range(len(decoded) + len(done_ids), min(upto, len(sources))):
                    decoded[j] = readers.submit(self._read, sources[j])

            done_ids = set()
            prefetch(ahead)
            for start in range(0, len(sources), batch):
                chunk_sources, chunk_images = [], []
                for i in range(start, min(start + batch, len(sources))):
                    image, error = decoded.pop(i).result()
                    done_ids.add(i)
                    if image is None:
                        where = sources[i][1] or sources[i][0]
                        log.warning("skipped %s", error if where in error else f"{where}: {error}")
                        skipped.append({"file": where, "reason": error})
                        continue
                    chunk_sources.append(sources[i])
                    chunk_images.append(image)
                prefetch(start + batch + ahead)
                if chunk_images:
                    results = self.model.detect(chunk_images)
                    refined = [False] * len(results)
                    if self.refine:
                        results, refined = refine_results(self.model, chunk_images, results, self.min_confidence)
                    variants = [[] for _ in chunk_images]
                    for flip in (TTA_FLIPS if self.tta else ()):
                        flipped_images = [flip_image(im, flip) for im in chunk_images]
                        flipped = self.model.detect(flipped_images)
                        if self.refine:
                            flipped, _ = refine_results(self.model, flipped_images, flipped, self.min_confidence)
                        for k, other in enumerate(flipped):
                            variants[k].append((flip, other))
                    for result, was_refined in zip(results, refined):
                        result["refined"] = was_refined
                    for source, image, result, extra in zip(chunk_sources, chunk_images, results, variants):
                        pending.append((writers.submit(self._write, source, image, result, extra),
                                        source, result))
                # Bound the results held in memory (full-size masks) when writing lags.
                collect(block=len(pending) > 2 * ahead)
                if bar:
                    bar.update(min(start + batch, len(sources)))
            collect(block=True)
        return {"images": records, "skipped": skipped, "masks": kept_masks}

    def write_summary(self, outcome, extra=None):
        """Write predictions.json and probabilities.csv for a run() outcome."""
        payload = {"class_names": self.class_names[1:], "min_confidence": self.min_confidence,
                   "images": outcome["images"], "skipped": outcome["skipped"]}
        payload.update(extra or {})
        with open(os.path.join(self.out_dir, "predictions.json"), "w") as f:
            json.dump(payload, f, indent=1)
        with open(os.path.join(self.out_dir, "probabilities.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image"] + self.class_names[1:])
            for record in outcome["images"]:
                writer.writerow([record["stem"]] + [f"{record['probabilities'][c]:.6f}"
                                                    for c in self.class_names[1:]])
