"""Display helpers: instances, boxes, masks, precision-recall, overlaps, weight statistics.

Matterport's public functions keep their names and arguments. Every plotting
function also takes ``path=``: given, the figure is drawn on a
``matplotlib.figure.Figure`` (no pyplot, no window, any backend) and saved as
a PNG; without it the figure is shown through pyplot as Matterport did.
``draw_overlay`` is a fast OpenCV-only renderer for batch outputs.

The evaluation and inspection figures (plot_precision_recall, plot_overlaps,
display_table, weight_stats, display_weight_stats) live in
mrcnn.visualize_stats and are importable from here; the save-or-show
plumbing is in mrcnn.figures.

Images are RGB uint8 [H, W, 3]; boxes are [N, (y1, x1, y2, x2)] in pixels with
y2/x2 exclusive; masks are bool [H, W, N].
"""
import colorsys
import logging

import cv2
import numpy as np
from matplotlib import patches

from .figures import complete, finish, get_axes, new_figure
from .visualize_stats import (display_table, display_weight_stats, plot_overlaps,  # noqa: F401  (Matterport API)
                              plot_precision_recall, weight_stats)

log = logging.getLogger(__name__)

_GOLDEN_RATIO_CONJUGATE = 0.618033988749895


# --------------------------------------------------------------------------- colours and masks

def random_colors(N, bright=True):
    """N visually distinct RGB colours.

    Hues step by the golden ratio, so the colours are well spread and the same
    for every call (figures are reproducible). Returns: list of N (r, g, b)
    tuples in [0, 1].
    """
    brightness = 1.0 if bright else 0.7
    return [colorsys.hsv_to_rgb((i * _GOLDEN_RATIO_CONJUGATE) % 1.0, 1.0, brightness) for i in range(N)]


def apply_mask(image, mask, color, alpha=0.5):
    """Tint the masked pixels of image with color, in place (as Matterport does).

    image: [H, W, 3] (uint8 or float, modified in place); mask: [H, W] bool/0-1;
    color: (r, g, b) in [0, 1]. Returns: the same image array.
    """
    where = np.asarray(mask).astype(bool)
    for c in range(3):
        channel = image[:, :, c]
        channel[where] = (channel[where] * (1 - alpha) + alpha * color[c] * 255).astype(image.dtype)
    return image


def _mask_contours(mask):
    """Outer contours of a binary mask as float arrays of (x, y) points.

    mask: [H, W] bool. Returns: list of [K, 2] arrays.
    """
    padded = np.pad(mask.astype(np.uint8), 1)
    contours, _ = cv2.findContours(padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return [c[:, 0, :].astype(np.float32) - 1 for c in contours]


# --------------------------------------------------------------------------- instance figures

def display_instances(image, boxes, masks, class_ids, class_names, scores=None, title="",
                      figsize=(16, 16), ax=None, show_mask=True, show_bbox=True, colors=None,
                      captions=None, path=None):
    """Draw detections (boxes, masks, class and score captions) over an image.

    image: [H, W, 3] uint8; boxes: [N, (y1, x1, y2, x2)]; masks: [H, W, N] bool;
    class_ids: [N] int; class_names: list indexed by class id; scores: [N] or None;
    captions: N strings overriding "class score"; colors: N RGB tuples in [0, 1].
    path: save a PNG there instead of showing. Returns: the saved path or None.
    """
    boxes = np.zeros((0, 4)) if boxes is None else np.asarray(boxes)
    count = boxes.shape[0]
    if count == 0:
        log.info("display_instances: no instances to display")
    elif (masks is not None and masks.shape[-1] != count) or len(class_ids) != count:
        mask_count = masks.shape[-1] if masks is not None else "no"
        raise ValueError(f"display_instances: {count} boxes but {mask_count} masks and "
                         f"{len(class_ids)} class ids")
    fig, ax, owns = get_axes(ax, figsize, path)
    colors = colors or random_colors(count)
    height, width = image.shape[:2]
    ax.set_ylim(height + 10, -10)
    ax.set_xlim(-10, width + 10)
    ax.axis("off")
    ax.set_title(title)

    masked_image = np.array(image, dtype=np.float32)
    for i in range(count):
        color = colors[i]
        if not np.any(boxes[i]):
            continue  # a zero box marks an instance cropped away by augmentation
        y1, x1, y2, x2 = boxes[i]
        if show_bbox:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2, alpha=0.7,
                                           linestyle="dashed", edgecolor=color, facecolor="none"))
        if captions is not None:
            caption = captions[i]
        else:
            label = class_names[class_ids[i]]
            caption = f"{label} {scores[i]:.3f}" if scores is not None else label
        ax.text(x1, y1 + 8, caption, color="w", size=11, backgroundcolor="none")
        if masks is not None:
            mask = masks[:, :, i]
            if show_mask:
                apply_mask(masked_image, mask, color)
            for contour in _mask_contours(mask):
                ax.add_patch(patches.Polygon(contour, facecolor="none", edgecolor=color))
    ax.imshow(masked_image.astype(np.uint8))
    return complete(fig, owns, path)


def display_images(images, titles=None, cols=4, cmap=None, norm=None, interpolation=None, path=None):
    """Show a grid of images with optional titles.

    images: list of [H, W] or [H, W, 3] arrays; titles: list of str.
    Returns: the saved path or None.
    """
    titles = titles if titles is not None else [""] * len(images)
    rows = max(1, (len(images) + cols - 1) // cols)
    fig = new_figure((14, 14 * rows / cols), path)
    for i, (image, title) in enumerate(zip(images, titles), start=1):
        ax = fig.add_subplot(rows, cols, i)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        ax.imshow(np.asarray(image).astype(np.uint8) if np.asarray(image).ndim == 3 else image,
                  cmap=cmap, norm=norm, interpolation=interpolation)
    return finish(fig, path)


def display_top_masks(image, mask, class_ids, class_names, limit=4, path=None):
    """Show the image beside the union mask of each of its most present classes.

    image: [H, W, 3]; mask: [H, W, N] bool; class_ids: [N]. limit: number of classes.
    Returns: the saved path or None.
    """
    class_ids = np.asarray(class_ids)
    to_display = [image]
    titles = ["H x W={}x{}".format(*image.shape[:2])]
    unique_ids = np.unique(class_ids)
    areas = [np.sum(mask[:, :, np.where(class_ids == cid)[0]]) for cid in unique_ids]
    ranked = [cid for area, cid in sorted(zip(areas, unique_ids), key=lambda pair: -pair[0]) if area > 0]
    for k in range(limit):
        cid = ranked[k] if k < len(ranked) else -1
        selected = np.where(class_ids == cid)[0]
        layer = np.sum(mask[:, :, selected] * np.arange(1, len(selected) + 1), axis=-1)
        to_display.append(layer)
        titles.append(class_names[cid] if cid != -1 else "-")
    return display_images(to_display, titles=titles, cols=limit + 1, cmap="Blues_r", path=path)


def draw_boxes(image, boxes=None, refined_boxes=None, masks=None, captions=None, visibilities=None,
               title="", ax=None, path=None):
    """Draw boxes, their refinements, masks and captions (for anchors, proposals, ROIs).

    image: [H, W, 3]; boxes, refined_boxes: [N, (y1, x1, y2, x2)]; masks: [H, W, N];
    captions: N strings; visibilities: [N] of 0 (skip), 1 (faint dotted), 2 (solid, default).
    Returns: the saved path or None.
    """
    if boxes is None and refined_boxes is None:
        raise ValueError("draw_boxes needs boxes or refined_boxes")
    count = len(boxes) if boxes is not None else len(refined_boxes)
    fig, ax, owns = get_axes(ax, (12, 12), path)
    colors = random_colors(count)
    margin = image.shape[0] // 10
    ax.set_ylim(image.shape[0] + margin, -margin)
    ax.set_xlim(-margin, image.shape[1] + margin)
    ax.axis("off")
    ax.set_title(title)

    masked_image = np.array(image, dtype=np.float32)
    for i in range(count):
        visibility = visibilities[i] if visibilities is not None else 2
        if visibility == 0:
            continue
        color, style, alpha = ((0.5, 0.5, 0.5), "dotted", 0.5) if visibility == 1 else (colors[i], "solid", 1.0)
        has_box = boxes is not None and np.any(boxes[i])
        if has_box:
            y1, x1, y2, x2 = boxes[i]
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2, alpha=alpha,
                                           linestyle=style, edgecolor=color, facecolor="none"))
        if refined_boxes is not None:
            ry1, rx1, ry2, rx2 = np.asarray(refined_boxes[i]).astype(np.int32)
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2,
                                           edgecolor=color, facecolor="none"))
            if has_box:
                ax.plot([x1, rx1], [y1, ry1], color=color, linewidth=1)  # box corner -> refined corner
        if captions is not None:
            y1, x1 = (boxes[i][:2] if boxes is not None else refined_boxes[i][:2])
            ax.text(x1, y1, captions[i], size=11, verticalalignment="top", color="w",
                    backgroundcolor="none", bbox={"facecolor": color, "alpha": 0.5, "pad": 2,
                                                  "edgecolor": "none"})
        if masks is not None:
            mask = masks[:, :, i]
            apply_mask(masked_image, mask, color)
            for contour in _mask_contours(mask):
                ax.add_patch(patches.Polygon(contour, facecolor="none", edgecolor=color))
    ax.imshow(masked_image.astype(np.uint8))
    return complete(fig, owns, path)


def draw_box(image, box, color):
    """Draw a 1-pixel box outline into image in place.

    image: [H, W, 3] uint8; box: (y1, x1, y2, x2); color: 3 values in image units.
    Returns: the same image.
    """
    y1, x1, y2, x2 = [int(v) for v in box]
    cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), tuple(int(c) for c in color), 1)
    return image


# --------------------------------------------------------------------------- fast overlay

def draw_overlay(image, masks, boxes, captions, colors=None, alpha=0.4):
    """Render detections onto a copy of image with OpenCV (no matplotlib; fast).

    image: [H, W, 3] uint8 RGB; masks: [H, W, N] bool (or None); boxes:
    [N, (y1, x1, y2, x2)] pixels; captions: N strings (or None); colors: N RGB
    tuples in [0, 1] (default random_colors); alpha: mask tint opacity.
    Each instance gets a tinted mask, its contour, its box and a caption in
    white on a dark background above the box (inside it at the top edge).
    Returns: uint8 [H, W, 3].
    """
    out = np.ascontiguousarray(np.asarray(image, dtype=np.uint8).copy())
    height, width = out.shape[:2]
    boxes = np.zeros((0, 4), dtype=np.int32) if boxes is None else np.asarray(boxes).reshape(-1, 4)
    count = boxes.shape[0] if masks is None else max(boxes.shape[0], masks.shape[-1])
    colors = colors or random_colors(count)
    colors_255 = [tuple(int(round(255 * c)) for c in color[:3]) for color in colors]
    thickness = max(1, int(round(min(height, width) / 300)))
    font_scale = max(0.35, min(height, width) / 900)

    for i in range(count):
        color = colors_255[i % len(colors_255)]
        if masks is not None and i < masks.shape[-1]:
            rows = np.flatnonzero(masks[:, :, i].any(axis=1))
            if rows.size:
                # Work inside the mask's bounding rows/columns only: on a 6-megapixel
                # image the full-frame boolean indexing cost more than the drawing.
                cols = np.flatnonzero(masks[rows[0]:rows[-1] + 1, :, i].any(axis=0))
                top, left = int(rows[0]), int(cols[0])
                mask = masks[top:rows[-1] + 1, left:cols[-1] + 1, i].astype(bool)
                patch = out[top:rows[-1] + 1, left:cols[-1] + 1]
                tint = np.array(color, dtype=np.float32)
                patch[mask] = np.clip(patch[mask] * (1 - alpha) + tint * alpha, 0, 255).astype(np.uint8)
                contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                               cv2.CHAIN_APPROX_SIMPLE, offset=(left, top))
                cv2.drawContours(out, contours, -1, color, thickness)
        if i >= boxes.shape[0] or not np.any(boxes[i]):
            continue
        y1, x1, y2, x2 = [int(round(v)) for v in boxes[i]]
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), color, thickness)
        if captions is not None and i < len(captions) and captions[i]:
            _draw_caption(out, str(captions[i]), x1, y1, font_scale)
    return out


def _draw_caption(image, text, x, y, font_scale):
    """Write text in white on a dark box whose bottom-left sits at (x, y), kept inside the image.

    image: [H, W, 3] uint8, modified in place.
    """
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_w, text_h), baseline = cv2.getTextSize(text, font, font_scale, 1)
    box_h = text_h + baseline + 4
    top = y - box_h if y - box_h >= 0 else max(y, 0)  # no room above: put it inside the box
    left = min(max(x, 0), max(image.shape[1] - text_w - 4, 0))
    cv2.rectangle(image, (left, top), (left + text_w + 4, top + box_h), (20, 20, 20), cv2.FILLED)
    cv2.putText(image, text, (left + 2, top + text_h + 2), font, font_scale, (255, 255, 255), 1,
                cv2.LINE_AA)
