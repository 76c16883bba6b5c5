"""The investigate report's figures (small PNGs) and its HTML page (skinlesion.report fills them).

Every figure function takes the data to draw and a ``path`` and returns the path.
Figures are plain ``matplotlib.figure.Figure`` objects (never pyplot), so no
window opens and nothing stays registered; each is cleared after saving.
Images are RGB uint8 [H, W, 3]; boxes are [N, (y1, x1, y2, x2)] in pixels.
``Page`` collects the sections and writes ``index.html``: inline CSS, no
script, every text escaped, figures referenced as ``figures/<name>.png``.
"""
import html
import math
import os

import cv2
import numpy as np
from matplotlib import patches
from matplotlib.figure import Figure

from mrcnn import visualize

DPI = 80
# Longer side of the image copies kept for figures: full-size ISIC images (up to ~6000 px) are not held.
THUMBNAIL_SIDE = 256
TRUTH_COLOR = (0.1, 0.9, 0.2)
PREDICTION_COLOR = (1.0, 0.3, 0.1)


def save(fig, path):
    """Save fig as a PNG at path (creating its folder), clear it; return path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    fig.clear()
    return path


def _grid(count, cols, cell=(2.4, 2.6)):
    """A Figure with a rows x cols grid of axes for count panels; unused axes hidden.

    Returns: (fig, list of count Axes).
    """
    cols = max(1, min(cols, count))
    rows = max(1, -(-count // cols))
    fig = Figure(figsize=(cell[0] * cols, cell[1] * rows))
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(rows * cols)]
    for ax in axes:
        ax.axis("off")
    return fig, axes[:count]


def overlay(image, mask=None, box=None, color=TRUTH_COLOR):
    """Image with one tinted mask outline and box drawn in (OpenCV). Returns: uint8 [H, W, 3]."""
    masks = None if mask is None else np.asarray(mask, bool)[..., None]
    boxes = None if box is None else np.asarray(box).reshape(1, 4)
    if masks is None and boxes is None:
        return np.asarray(image, np.uint8)
    return visualize.draw_overlay(image, masks, boxes, None, colors=[color])


def _no_data(path, message):
    """A small figure that says why there is nothing to draw. Returns: path."""
    fig = Figure(figsize=(4, 1.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10)
    return save(fig, path)


# --------------------------------------------------------------------------- what to draw

def thumbnail(array, side=None, is_mask=False):
    """Downscale so the longer side is at most ``side`` pixels (figures need no more).

    array: uint8 image [H, W, 3] or bool mask [H, W]. Returns: the same kind, maybe smaller.
    """
    side = side or THUMBNAIL_SIDE
    height, width = array.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return array
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    if is_mask:
        return cv2.resize(array.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) > 127
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------- data

def histogram(values, path, title, xlabel, bins=20, value_range=None, color="#4472c4"):
    """Histogram of one list of numbers. Returns: path."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if values.size == 0:
        return _no_data(path, f"{title}: no values")
    fig = Figure(figsize=(4.5, 3))
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(values, bins=bins, range=value_range, color=color, edgecolor="white")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    return save(fig, path)


def size_histogram(widths, heights, path):
    """Histograms of image widths and heights (pixels) on one axis. Returns: path."""
    fig = Figure(figsize=(4.5, 3))
    ax = fig.add_subplot(1, 1, 1)
    both = np.concatenate([widths, heights]).astype(np.float64)
    low, high = (both.min(), both.max()) if both.size else (0, 1)
    if low == high:
        low, high = low - 0.5, high + 0.5
    ax.hist([widths, heights], bins=20, range=(low, high), label=["width", "height"],
            color=["#4472c4", "#ed7d31"])
    ax.legend(fontsize=8)
    ax.set_title("Image size", fontsize=10)
    ax.set_xlabel("pixels")
    ax.set_ylabel("images")
    return save(fig, path)


def truth_grid(samples, path, cols=4):
    """Images with their ground-truth mask and box; samples: [(image, mask, box, title)]. Returns: path."""
    if not samples:
        return _no_data(path, "no image could be loaded")
    fig, axes = _grid(len(samples), cols)
    for ax, (image, mask, box, title) in zip(axes, samples):
        ax.imshow(overlay(image, mask, box))
        ax.set_title(title, fontsize=8)
    return save(fig, path)


# --------------------------------------------------------------------------- anchors

def anchors_at_location(image, level_anchors, level_names, path):
    """One panel per pyramid level: the anchors of one location drawn over the image.

    level_anchors: list of [S, 4] pixel boxes (S anchor shapes per location).
    Returns: path.
    """
    fig, axes = _grid(len(level_anchors), len(level_anchors), cell=(2.6, 2.8))
    height, width = image.shape[:2]
    for ax, boxes, name in zip(axes, level_anchors, level_names):
        ax.imshow(image)
        colors = visualize.random_colors(len(boxes))
        for box, color in zip(boxes, colors):
            y1, x1, y2, x2 = box
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color,
                                           linewidth=1.5))
        low = np.minimum(boxes[:, :2].min(axis=0), 0) - 2
        high = np.maximum(boxes[:, 2:].max(axis=0), (height, width)) + 2
        ax.set_xlim(low[1], high[1])
        ax.set_ylim(high[0], low[0])
        ax.add_patch(patches.Rectangle((0, 0), width, height, fill=False, edgecolor="white",
                                       linestyle="dotted", linewidth=1))
        ax.set_title(name, fontsize=9)
    return save(fig, path)


def rpn_targets(image, gt_boxes, positive_anchors, refined, negative_anchors, path):
    """Three panels: positive anchors with the truth box, positives refined by their target
    deltas, and a sample of negative anchors. Boxes in pixels. Returns: path."""
    fig, axes = _grid(3, 3, cell=(3.2, 3.4))
    panels = [(positive_anchors, None, f"{len(positive_anchors)} positive anchors"),
              (positive_anchors, refined, "positives refined by their deltas"),
              (negative_anchors, None, f"{len(negative_anchors)} of the negative anchors")]
    for ax, (boxes, refined_boxes, title) in zip(axes, panels):
        if len(boxes):
            visualize.draw_boxes(image, boxes=None if refined_boxes is not None else boxes,
                                 refined_boxes=refined_boxes, ax=ax, title="")
        else:
            ax.imshow(image)
        for box in gt_boxes:
            y1, x1, y2, x2 = box
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white",
                                           linestyle="dashed", linewidth=1.5))
        ax.set_title(title, fontsize=9)
    return save(fig, path)


# --------------------------------------------------------------------------- model stages

def stage_panels(panels, path):
    """Model stages side by side; panels: [(image, boxes_px [N, 4], refined_px or None, title)].

    Boxes are drawn thin; when refined boxes are given they are drawn instead of
    the boxes, joined to them by a line. Returns: path.
    """
    fig, axes = _grid(len(panels), len(panels), cell=(3.2, 3.4))
    for ax, (image, boxes, refined, title) in zip(axes, panels):
        if len(boxes):
            visualize.draw_boxes(image, boxes=boxes, refined_boxes=refined,
                                 visibilities=None if refined is None else [1] * len(boxes), ax=ax)
            if refined is not None:
                # draw_boxes greys out faint boxes; redraw the refined ones in colour on top.
                for box, color in zip(refined, visualize.random_colors(len(refined))):
                    y1, x1, y2, x2 = box
                    ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                                   edgecolor=color, linewidth=1.2))
        else:
            ax.imshow(image)
        ax.set_title(title, fontsize=9)
    return save(fig, path)


def detections(image, boxes, masks, class_ids, scores, class_names, path, title):
    """Final detections (masks, boxes, class and score) over the image. Returns: path."""
    fig = Figure(figsize=(3.6, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    captions = [f"{class_names[c]} {s:.2f}" for c, s in zip(class_ids, scores)]
    visualize.display_instances(image, boxes, masks, class_ids, class_names, scores=scores, ax=ax,
                                captions=captions, title=title)
    for text in ax.texts:
        text.set_fontsize(7)
    ax.title.set_fontsize(9)
    return save(fig, path)


# --------------------------------------------------------------------------- results

def precision_recall(precisions, recalls, ap, path):
    """Precision-recall curve pooled over images. Returns: path."""
    fig = Figure(figsize=(4.2, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    ax.step(recalls, precisions, where="post", color="#4472c4")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"Mask IoU >= 0.5, pooled AP = {ap:.3f}" if ap is not None else "No ground truth",
                 fontsize=10)
    ax.grid(alpha=0.3)
    return save(fig, path)


def confusion(matrix, row_names, column_names, path):
    """Confusion matrix (rows truth, columns prediction) with counts in the cells. Returns: path."""
    matrix = np.asarray(matrix)
    fig = Figure(figsize=(1.2 + 0.9 * len(column_names), 1.2 + 0.7 * len(row_names)))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(1, matrix.max()), aspect="auto")
    ax.set_xticks(range(len(column_names)))
    ax.set_xticklabels(column_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_names)))
    ax.set_yticklabels(row_names, fontsize=8)
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(col, row, str(int(value)), ha="center", va="center", fontsize=9,
                color="white" if value > matrix.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    return save(fig, path)


def roc(curves, path):
    """ROC curves; curves: [(class name, fpr [K], tpr [K], auc or None)]. Returns: path."""
    if not curves:
        return _no_data(path, "no class has both positive and negative images")
    fig = Figure(figsize=(4.2, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    for name, fpr, tpr, auc in curves:
        label = f"{name} (AUC {auc:.2f})" if auc is not None else name
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="dotted", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, path)


def worst_cases(rows, path):
    """One row per image: image, truth, prediction; rows: [(image, truth, pred, title)]. Returns: path."""
    if not rows:
        return _no_data(path, "no scored image")
    fig = Figure(figsize=(6.6, 2.6 * len(rows)))
    for index, (image, truth, prediction, title) in enumerate(rows):
        panels = [(image, title), (overlay(image, truth, None, TRUTH_COLOR), "truth"),
                  (overlay(image, prediction, None, PREDICTION_COLOR), "prediction")]
        for col, (picture, name) in enumerate(panels):
            ax = fig.add_subplot(len(rows), 3, 3 * index + col + 1)
            ax.imshow(picture)
            ax.axis("off")
            ax.set_title(name, fontsize=8, loc="left" if col == 0 else "center")
    fig.subplots_adjust(hspace=0.45)
    return save(fig, path)


# --------------------------------------------------------------------------- weights

def weight_histograms(layers, path):
    """Histograms of a few layers' weights; layers: [(title, values, flagged bool)]. Returns: path."""
    if not layers:
        return _no_data(path, "no weights")
    fig, axes = _grid(len(layers), 3, cell=(3.0, 2.4))
    for ax, (title, values, flagged) in zip(axes, layers):
        ax.axis("on")
        values = np.asarray(values, np.float64).ravel()
        finite = values[np.isfinite(values)]
        if finite.size:
            ax.hist(finite, bins=40, color="#c00000" if flagged else "#4472c4")
        ax.set_title(title + ("  (flagged)" if flagged else ""), fontsize=8,
                     color="#c00000" if flagged else "black")
        ax.tick_params(labelsize=7)
        ax.locator_params(axis="x", nbins=5)
    fig.tight_layout()
    return save(fig, path)


# --------------------------------------------------------------------------- the HTML page

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
nav ul{columns:2;list-style:none;padding-left:0}nav a{text-decoration:none}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f2f2f2}
tbody tr:nth-child(even){background:#fafafa}
.scroll{max-height:340px;overflow:auto;border:1px solid #eee;display:inline-block;max-width:100%}
figure{display:inline-block;margin:.6em 1em .6em 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555;max-width:600px}
.note{color:#666;font-style:italic}.bad{color:#b00000;font-weight:bold}
.meta{color:#666;font-size:.9em}
"""


class Page:
    """The report page: sections of HTML fragments, figures saved in OUT/figures/, index.html."""

    def __init__(self, out_dir):
        """Create out_dir and out_dir/figures."""
        self.out_dir = os.path.abspath(out_dir)
        self.figure_dir = os.path.join(self.out_dir, "figures")
        os.makedirs(self.figure_dir, exist_ok=True)
        self.sections = []  # (anchor id, title, [html parts])
        self.figures = []

    def section(self, anchor, title):
        """Start a section; returns its list of HTML parts to append to."""
        parts = []
        self.sections.append((anchor, title, parts))
        return parts

    def path(self, name):
        """Absolute path of a figure file."""
        return os.path.join(self.figure_dir, name)

    def figure(self, path, caption):
        """HTML of a saved figure (relative src) with its one-sentence caption."""
        relative = "figures/" + os.path.basename(path)
        self.figures.append(relative)
        return (f'<figure><img src="{html.escape(relative)}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def write(self, title, meta):
        """Write OUT/index.html: title, meta line linking summary.json, contents, sections. Returns: its path."""
        toc = "".join(f'<li><a href="#{anchor}">{html.escape(name)}</a></li>' for anchor, name, _ in self.sections)
        body = "".join(f'<section id="{anchor}"><h2>{html.escape(name)}</h2>{"".join(parts)}</section>'
                       for anchor, name, parts in self.sections)
        page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
                f'<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>'
                f'<p class="meta">{html.escape(meta)}<a href="summary.json">summary.json</a></p>'
                f"<nav><h2>Contents</h2><ul>{toc}</ul></nav>{body}</body></html>")
        path = os.path.join(self.out_dir, "index.html")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(page)
        return path


def table(header, rows):
    """An HTML table; cells are escaped, floats shown with 3 decimals, None and NaN as a dash."""
    def cell(value):
        if value is None:
            return "&ndash;"
        if isinstance(value, (float, np.floating)):
            return "&ndash;" if not math.isfinite(value) else f"{value:.3f}"
        return html.escape(str(value))
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def note(text):
    """An escaped side remark (italic grey paragraph)."""
    return f'<p class="note">{html.escape(text)}</p>'


def paragraph(text):
    """An escaped paragraph."""
    return f"<p>{html.escape(text)}</p>"
