"""Move a lesion to another scale or frame exactly: the image placed unchanged on a larger skin canvas, or cut square.

Used by the cross-dataset benchmark (``bench/cross_dataset.py``) to ask how a
model trained on PH2's framing (lesions covering a median 23 % of the image)
does on lesions framed as ISIC frames them (a median 5.5 %). No pixel of the
image or mask is resampled: the canvas grows around the original image, so
the moved mask is the original mask padded with zeros, and a moved image
scored against its moved mask measures detection at the new scale, not
interpolation. The canvas is skin in the image's own colours
(``skinlesion.augment.skin_canvas``), blended into the image's border.
``square_crop`` cuts the largest square holding the lesion, so a model
trained on PH2's 768x560 frame can be scored on the square frames of the
ISIC copies with exact masks.
"""
import os

import numpy as np
from PIL import Image

from skinlesion.augment import mask_box, paste_lesion, skin_canvas


def canvas_shape_for(shape, lesion_area, target_area):
    """Canvas (H, W) around an image of ``shape`` (h, w) so a lesion of ``lesion_area`` pixels covers ``target_area``.

    Both sides grow by the same factor sqrt(area share / target), keeping the
    aspect ratio; never smaller than the image. Returns (H, W) ints.
    """
    h, w = int(shape[0]), int(shape[1])
    share = float(lesion_area) / float(h * w)
    factor = max(1.0, float(np.sqrt(share / float(target_area)))) if share > 0 else 1.0
    return max(h, int(round(h * factor))), max(w, int(round(w * factor)))


def move_to_scale(image, mask, target_area, seed=0, offset=None):
    """Place ``image`` on a skin canvas large enough that its lesion covers ``target_area`` of the result.

    image: uint8 [h, w, 3]; mask: bool or uint8 [h, w] (nonzero = lesion);
    target_area: wanted lesion share of the new image (0-1); a lesion already
    smaller than that is left as it is. offset: (top, left) of the image on
    the canvas, default a seeded random place. Returns (image uint8 [H, W, 3],
    mask bool [H, W], (top, left)); ``mask[top:top+h, left:left+w]`` equals
    the input mask and the rest is False.
    """
    image = np.asarray(image, np.uint8)
    lesion = np.asarray(mask) > 0
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"move_to_scale: image must be [H, W, 3] uint8, got shape {image.shape}")
    if lesion.shape != image.shape[:2]:
        raise ValueError(f"move_to_scale: mask shape {lesion.shape} differs from image shape {image.shape[:2]}")
    if not 0 < target_area <= 1:
        raise ValueError(f"move_to_scale: target_area must be in (0, 1], got {target_area}")
    h, w = image.shape[:2]
    H, W = canvas_shape_for((h, w), lesion.sum(), target_area)
    rng = np.random.default_rng(seed)
    if offset is None:
        offset = (int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1)))
    top, left = int(offset[0]), int(offset[1])
    if not (0 <= top <= H - h and 0 <= left <= W - w):
        raise ValueError(f"move_to_scale: offset {offset} puts the {h}x{w} image outside the {H}x{W} canvas")
    canvas = skin_canvas(image, lesion, (H, W), rng)
    out = paste_lesion(canvas, image, lesion, top, left)
    moved = np.zeros((H, W), bool)
    moved[top:top + h, left:left + w] = lesion
    return out, moved, (top, left)


def square_crop(image, mask):
    """The largest square of ``image`` that holds its lesion where it can, cut exactly (no resampling).

    image: uint8 [h, w, 3]; mask: bool or uint8 [h, w]. Side min(h, w); along
    the longer side the square is centred on the lesion's box, moved inside
    the image. Returns (image uint8 [s, s, 3], mask bool [s, s], (top, left)).
    """
    image = np.asarray(image, np.uint8)
    lesion = np.asarray(mask) > 0
    if lesion.shape != image.shape[:2]:
        raise ValueError(f"square_crop: mask shape {lesion.shape} differs from image shape {image.shape[:2]}")
    h, w = image.shape[:2]
    side = min(h, w)
    box = mask_box(lesion)
    cy, cx = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2) if box else (h / 2, w / 2)
    top = int(np.clip(round(cy - side / 2), 0, h - side))
    left = int(np.clip(round(cx - side / 2), 0, w - side))
    return image[top:top + side, left:left + side].copy(), lesion[top:top + side, left:left + side].copy(), \
        (top, left)


def write_square_folder(pairs, out_dir):
    """Write square crops (square_crop) of (stem, image, mask) pairs as a plain folder layout.

    Returns [{"stem", "side", "top", "left", "lesion_kept"}]: lesion_kept is
    the share of the lesion's pixels inside the square (1.0 for nearly every
    PH2 image).
    """
    rows = []
    for stem, image, mask in pairs:
        cut, cut_mask, (top, left) = square_crop(image, mask)
        write_pair(out_dir, stem, cut, cut_mask)
        total = int((np.asarray(mask) > 0).sum())
        rows.append({"stem": stem, "side": cut.shape[0], "top": top, "left": left,
                     "lesion_kept": round(float(cut_mask.sum()) / total, 5) if total else 1.0})
    return rows


def write_pair(out_dir, stem, image, mask):
    """Write out_dir/images/<stem>.png and out_dir/masks/<stem>_segmentation.png (0/255): the plain folder layout."""
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "masks"), exist_ok=True)
    Image.fromarray(np.asarray(image, np.uint8)).save(os.path.join(out_dir, "images", f"{stem}.png"))
    Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255).save(
        os.path.join(out_dir, "masks", f"{stem}_segmentation.png"))


def write_moved_folder(pairs, out_dir, low, high, seed=0):
    """Write scale-moved copies of (stem, image, mask) pairs as a plain folder layout.

    Each image's target share is drawn log-uniformly from [low, high] (seeded
    per image by its position). Writes out_dir/images/<stem>.png,
    out_dir/masks/<stem>_segmentation.png (0/255) and out_dir/moves.csv
    (stem, original size, canvas size, offset, lesion share before and after).
    Returns the list of per-image dicts written to moves.csv.
    """
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for index, (stem, image, mask) in enumerate(pairs):
        rng = np.random.default_rng([seed, index])
        target = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        moved_image, moved_mask, (top, left) = move_to_scale(image, mask, target, seed=(seed, index))
        write_pair(out_dir, stem, moved_image, moved_mask)
        rows.append({"stem": stem, "height": image.shape[0], "width": image.shape[1],
                     "canvas_height": moved_image.shape[0], "canvas_width": moved_image.shape[1],
                     "top": top, "left": left, "target_share": round(target, 5),
                     "share_before": round(float((np.asarray(mask) > 0).mean()), 5),
                     "share_after": round(float(moved_mask.mean()), 5)})
    with open(os.path.join(out_dir, "moves.csv"), "w") as f:
        f.write(",".join(rows[0].keys()) + "\n" if rows else "stem\n")
        for row in rows:
            f.write(",".join(str(v) for v in row.values()) + "\n")
    return rows
