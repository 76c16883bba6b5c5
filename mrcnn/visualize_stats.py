"""Evaluation and model-inspection figures: precision-recall, IoU overlaps, tables, weight statistics.

Every plotting function takes ``path=``: given, the figure is saved as a PNG
headless; without it the figure is shown through pyplot (mrcnn.figures).
All names here are also importable from mrcnn.visualize (Matterport's API).
"""
import logging

import numpy as np

from .figures import complete, finish, get_axes, new_figure

# The logger keeps the name of the module these functions were published from,
# so existing log filters on "mrcnn.visualize" still see their messages.
log = logging.getLogger("mrcnn.visualize")


def plot_precision_recall(AP, precisions, recalls, path=None):
    """Plot the precision-recall curve of one evaluation.

    AP: average precision (float); precisions, recalls: [K] arrays.
    Returns: the saved path or None.
    """
    fig, ax, owns = get_axes(None, (6, 5), path)
    ax.set_title(f"Precision-Recall Curve. AP@50 = {AP:.3f}")
    ax.set_ylim(0, 1.1)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.plot(recalls, precisions)
    return complete(fig, owns, path)


def plot_overlaps(gt_class_ids, pred_class_ids, pred_scores, overlaps, class_names, threshold=0.5,
                  path=None):
    """Show the IoU grid between predictions (rows) and ground truth (columns).

    gt_class_ids: [G]; pred_class_ids, pred_scores: [P]; overlaps: [P, G] IoU.
    Cells above threshold read "match" when classes agree, "wrong" otherwise.
    Returns: the saved path or None.
    """
    gt_class_ids = np.asarray(gt_class_ids)[np.asarray(gt_class_ids) != 0]
    keep = np.asarray(pred_class_ids) != 0
    pred_class_ids = np.asarray(pred_class_ids)[keep]
    pred_scores = np.asarray(pred_scores)[keep]
    overlaps = np.asarray(overlaps).reshape(len(keep), -1)[keep][:, :len(gt_class_ids)]
    size = (max(4, len(gt_class_ids) * 0.9 + 3), max(3, len(pred_class_ids) * 0.6 + 2))
    fig, ax, owns = get_axes(None, size, path)
    image = ax.imshow(overlaps, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.04)
    ax.set_yticks(np.arange(len(pred_class_ids)))
    ax.set_yticklabels([f"{class_names[int(c)]} ({s:.2f})" for c, s in zip(pred_class_ids, pred_scores)])
    ax.set_xticks(np.arange(len(gt_class_ids)))
    ax.set_xticklabels([class_names[int(c)] for c in gt_class_ids], rotation=90)
    for i in range(overlaps.shape[0]):
        for j in range(overlaps.shape[1]):
            value = overlaps[i, j]
            text = ""
            if value > threshold:
                text = "match" if gt_class_ids[j] == pred_class_ids[i] else "wrong"
            color = "white" if value > 0.5 else ("gray" if value < threshold else "black")
            ax.text(j, i, f"{value:.3f}\n{text}", ha="center", va="center", fontsize=9, color=color)
    ax.set_ylabel("Predictions")
    ax.set_xlabel("Ground Truth")
    ax.set_title(f"Overlaps (IoU), threshold {threshold}")
    return complete(fig, owns, path)


# --------------------------------------------------------------------------- tables

def _table_text(table):
    """Rows of cells -> an aligned plain-text table (first row is the header). Returns: str."""
    rows = [[str(cell) for cell in row] for row in table]
    if not rows:
        return ""
    widths = [max(len(row[c]) for row in rows if c < len(row)) for c in range(max(map(len, rows)))]
    lines = ["  ".join(cell.ljust(widths[c]) for c, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def display_table(table, path=None):
    """Print a table (list of rows, first row the header), or save it as a PNG at path.

    Returns: the table as aligned text.
    """
    text = _table_text(table)
    if path is None:
        print(text)
        return text
    rows = [[str(cell) for cell in row] for row in table]
    fig = new_figure((min(20, 2 + 2.2 * max(len(r) for r in rows)), 0.8 + 0.3 * len(rows)), path)
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    if rows:
        width = max(len(r) for r in rows)
        padded = [r + [""] * (width - len(r)) for r in rows]
        grid = ax.table(cellText=padded[1:] or [[""] * width], colLabels=padded[0], loc="center",
                        cellLoc="left")
        grid.auto_set_font_size(False)
        grid.set_fontsize(8)
        grid.auto_set_column_width(list(range(width)))
    finish(fig, path)
    return text


def weight_stats(model):
    """Per-weight statistics of a Keras model (nested models included).

    Returns: list of dicts {layer, weight, shape, min, max, std, flags} where flags
    lists "NaN" (non-finite values), "exploding" (|value| > 1000) and "dead"
    (a multi-value kernel that is constant).
    """
    stats = []

    def visit(layer):
        sub_layers = getattr(layer, "layers", None)
        if sub_layers:
            for sub in sub_layers:
                visit(sub)
            return
        for variable in layer.weights:
            values = np.asarray(variable.numpy(), dtype=np.float64)
            finite = values[np.isfinite(values)]
            flags = []
            if finite.size != values.size:
                flags.append("NaN")
            if finite.size and np.abs(finite).max() > 1000:
                flags.append("exploding")
            name = getattr(variable, "path", variable.name)
            if values.size > 1 and finite.size == values.size and values.std() == 0 and "kernel" in name:
                flags.append("dead")
            stats.append({
                "layer": layer.name, "weight": name, "shape": tuple(values.shape),
                "min": float(finite.min()) if finite.size else float("nan"),
                "max": float(finite.max()) if finite.size else float("nan"),
                "std": float(finite.std()) if finite.size else float("nan"),
                "flags": flags,
            })

    visit(model)
    return stats


def display_weight_stats(model, path=None):
    """Print (or save as PNG) a table of weight name, shape, min, max, std and flags.

    model: keras.Model or a MaskRCNN wrapper with .keras_model. Returns: the
    list of per-weight dicts from weight_stats.
    """
    keras_model = getattr(model, "keras_model", model)
    stats = weight_stats(keras_model)
    table = [["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD", "FLAGS"]]
    for row in stats:
        table.append([row["weight"], str(row["shape"]), f"{row['min']:+9.4f}", f"{row['max']:+9.4f}",
                      f"{row['std']:+10.4f}", " ".join(f"*** {flag}" for flag in row["flags"])])
    flagged = [row["weight"] for row in stats if row["flags"]]
    if flagged:
        log.warning("Weights with NaN / exploding / dead values: %s", flagged)
    display_table(table, path=path)
    return stats
