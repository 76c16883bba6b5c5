"""Export ground truth and detections as COCO JSON (for pycocotools' COCOeval).

Pure numpy: pycocotools is used for RLE encoding when it is importable (it is
faster), otherwise the identical encoding below is used. Both produce COCO's
compressed RLE: counts of alternating background / foreground runs over the
mask read in column-major (Fortran) order, starting with background, packed
into a string as in pycocotools' ``rleToString``.

Records are per-image dicts of numpy arrays (Matterport conventions):
- ground truth: "gt_masks" [H, W, N] bool, "gt_class_ids" int [N],
  optional "gt_boxes" [N, (y1, x1, y2, x2)], "image_id" (int, else the
  1-based position is used), "file_name", "height", "width" (taken from the
  masks when absent);
- detections: "pred_masks" [H, W, N], "pred_class_ids" [N], "pred_scores"
  [N], optional "pred_boxes", "image_id" (or MaskRCNN.detect()'s "masks",
  "class_ids", "scores", "rois").
Pass ground truth and detection records in the same order (or with the same
int image_id) so the ids agree.
"""
import json
import logging
import os

import numpy as np

logger = logging.getLogger(__name__)

try:  # Optional accelerator; the numpy encoder below gives the same strings.
    from pycocotools import mask as _coco_mask
except ImportError:  # pragma: no cover - depends on the environment
    _coco_mask = None


def rle_counts(mask):
    """Run lengths of a binary mask in COCO's order.

    mask: [H, W] bool or 0/1.
    Returns: int64 [R], alternating background / foreground run lengths over
        the column-major flattened mask, the first run being background
        (0 when the top-left pixel is foreground).
    """
    flat = np.asarray(mask).astype(bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    change_points = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    boundaries = np.concatenate([[0], change_points, [flat.size]])
    counts = np.diff(boundaries)
    if flat[0]:
        counts = np.concatenate([[0], counts])
    return counts.astype(np.int64)


def counts_to_string(counts):
    """Pack RLE counts into COCO's compressed string (pycocotools rleToString).

    counts: int [R] run lengths. Returns: str of ASCII characters 48..111.
    Each count after the second is stored as the difference to the count two
    places before, in 5-bit groups, least significant first, with bit 0x20
    marking that more groups follow and 0x10 the sign of the last group.
    """
    chars = []
    counts = [int(c) for c in counts]
    for index, count in enumerate(counts):
        value = count - counts[index - 2] if index > 2 else count
        more = True
        while more:
            group = value & 0x1F
            value >>= 5  # arithmetic shift, as the C code on a signed long
            more = value != -1 if group & 0x10 else value != 0
            if more:
                group |= 0x20
            chars.append(chr(group + 48))
    return "".join(chars)


def string_to_counts(text):
    """Unpack COCO's compressed RLE string (inverse of counts_to_string).

    text: str or bytes. Returns: int64 [R] run lengths.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii")
    counts, position = [], 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << (5 * shift)
            more = bool(group & 0x20)
            position += 1
            shift += 1
            if not more and group & 0x10:
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return np.asarray(counts, dtype=np.int64)


def encode_rle(mask, compressed=True):
    """COCO RLE of one binary mask, computed in numpy.

    mask: [H, W] bool or 0/1. compressed: True for the string form (what
        COCO results files use), False for {"counts": [ints]} (accepted by
        pycocotools in ground-truth files).
    Returns: {"size": [H, W], "counts": str or list of int}.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode_rle expects one [H, W] mask, got shape {mask.shape}")
    counts = rle_counts(mask)
    size = [int(mask.shape[0]), int(mask.shape[1])]
    if compressed:
        return {"size": size, "counts": counts_to_string(counts)}
    return {"size": size, "counts": [int(c) for c in counts]}


def decode_rle(rle):
    """Binary mask of a COCO RLE (compressed or uncompressed).

    rle: {"size": [H, W], "counts": str / bytes / list of int}.
    Returns: bool [H, W].
    """
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        counts = string_to_counts(counts)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != height * width:
        raise ValueError(f"RLE counts sum to {counts.sum()}, expected {height * width}")
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    return flat.reshape((height, width), order="F")


def _encode(mask):
    """Compressed RLE of a mask with a JSON-ready str counts.

    mask: [H, W] bool. Returns: {"size": [H, W], "counts": str}.
    """
    if _coco_mask is not None:
        rle = _coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
    return encode_rle(mask, compressed=True)


def _coco_bbox(box):
    """COCO [x, y, width, height] from a Matterport box.

    box: [4] (y1, x1, y2, x2), y2/x2 exclusive. Returns: list of 4 floats.
    """
    y1, x1, y2, x2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def _image_id(record, position):
    """COCO image id of a record: its int "image_id", else position + 1.

    record: dict; position: 0-based index in the record list. Returns: int.
    """
    image_id = record.get("image_id")
    if isinstance(image_id, (int, np.integer)) and not isinstance(image_id, bool):
        return int(image_id)
    return position + 1


def _instances(record, prefix):
    """Masks, class ids and boxes of a record's ground truth or predictions.

    record: dict; prefix: "gt" or "pred".
    Returns: (masks bool [H, W, N], class_ids int [N], boxes [N, 4],
              scores float [N] or None).
    """
    from mrcnn.boxes import extract_bboxes

    aliases = {"masks": "masks", "class_ids": "class_ids", "boxes": "rois", "scores": "scores"}

    def field(name):
        """The record's {prefix}_{name} array, or detect()'s name for it."""
        value = record.get(f"{prefix}_{name}")
        if value is None and prefix == "pred":
            value = record.get(aliases[name])
        return value

    masks = field("masks")
    if masks is None:
        raise KeyError(f"Record is missing '{prefix}_masks' (keys: {sorted(record)})")
    masks = np.asarray(masks).astype(bool)
    if masks.ndim != 3:
        raise ValueError(f"'{prefix}_masks' must be [H, W, N], got shape {masks.shape}")
    class_ids = np.asarray(field("class_ids")).reshape(-1).astype(np.int64)
    boxes = field("boxes")
    boxes = extract_bboxes(masks) if boxes is None else np.asarray(boxes).reshape(-1, 4)
    scores = field("scores")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    count = masks.shape[-1]
    if len(class_ids) != count or len(boxes) != count or (scores is not None
                                                         and len(scores) != count):
        raise ValueError(f"{prefix}: {count} masks but {len(class_ids)} class ids, "
                         f"{len(boxes)} boxes" + ("" if scores is None else
                                                  f", {len(scores)} scores"))
    return masks, class_ids, boxes, scores


def _categories(class_names):
    """COCO categories from Matterport class names.

    class_names: sequence where class_names[i] names class id i and index 0
        is the background ("BG", not exported); or a mapping id -> name.
    Returns: list of {"id", "name", "supercategory"}.
    """
    if hasattr(class_names, "items"):
        pairs = sorted((int(k), str(v)) for k, v in class_names.items())
    else:
        pairs = list(enumerate(str(name) for name in class_names))
    return [{"id": class_id, "name": name, "supercategory": "lesion"}
            for class_id, name in pairs if class_id != 0]


def gt_to_coco(records, class_names):
    """Ground truth of a dataset as a COCO instances dict.

    records: list of per-image dicts (module docstring): gt_masks [H, W, N],
        gt_class_ids [N], optional gt_boxes, image_id, file_name.
    class_names: Matterport's dataset.class_names (index = class id, index 0
        the background, skipped) or a mapping id -> name.
    Returns: {"info", "images", "categories", "annotations"}; annotations
        carry compressed-RLE "segmentation", "area" (mask pixels), "bbox"
        [x, y, w, h], "iscrowd" 0. Empty masks are left out (logged).
    """
    images, annotations = [], []
    for position, record in enumerate(records):
        masks, class_ids, boxes, _ = _instances(record, "gt")
        image_id = _image_id(record, position)
        height = int(record.get("height", masks.shape[0]))
        width = int(record.get("width", masks.shape[1]))
        if (height, width) != masks.shape[:2]:
            raise ValueError(f"Image {image_id}: masks are {masks.shape[:2]}, "
                             f"record says {height}x{width}")
        images.append({"id": image_id, "width": width, "height": height,
                       "file_name": str(record.get("file_name", f"{image_id}"))})
        for index in range(masks.shape[-1]):
            area = int(masks[..., index].sum())
            if area == 0:
                logger.warning("Image %s: ground-truth instance %d has an empty mask; "
                               "left out of the COCO file", image_id, index)
                continue
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(class_ids[index]),
                "segmentation": _encode(masks[..., index]),
                "area": area,
                "bbox": _coco_bbox(boxes[index]),
                "iscrowd": 0,
            })
    return {"info": {"description": "skinlesion ground truth"},
            "images": images, "categories": _categories(class_names),
            "annotations": annotations}


def detections_to_coco(records):
    """Detections as a COCO results list (input of COCO.loadRes).

    records: list of per-image dicts (module docstring): pred_masks
        [H, W, N], pred_class_ids [N], pred_scores [N], optional pred_boxes
        and image_id (or detect()'s masks / class_ids / scores / rois).
    Returns: list of {"image_id", "category_id", "segmentation" (compressed
        RLE), "score", "bbox" [x, y, w, h]}.
    """
    results = []
    for position, record in enumerate(records):
        masks, class_ids, boxes, scores = _instances(record, "pred")
        if scores is None:
            raise KeyError(f"Record {position} has no 'pred_scores'")
        image_id = _image_id(record, position)
        for index in range(masks.shape[-1]):
            results.append({
                "image_id": image_id,
                "category_id": int(class_ids[index]),
                "segmentation": _encode(masks[..., index]),
                "score": float(scores[index]),
                "bbox": _coco_bbox(boxes[index]),
            })
    return results


def write_coco_json(path, obj):
    """Write a COCO dict or results list to a JSON file.

    path: output file (folders are created); obj: from gt_to_coco or
        detections_to_coco. Returns: path.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(obj, stream)
    logger.info("Wrote %s", path)
    return path
