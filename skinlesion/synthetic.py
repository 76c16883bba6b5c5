"""Synthetic dermoscopy: deterministic images with exact lesion masks and diagnoses.

``generate(seed)`` draws one dermoscopy-like image: a skin background of a
random tone, one lesion whose shape, border and colours follow its diagnosis
(nevus: round, symmetric, uniform brown; melanoma: asymmetric, notched,
variegated with black / blue-grey / red patches and dots; seborrheic
keratosis: waxy tan with milia-like bright dots and crypts; BCC: pinkish with
branching vessels; ...), then the artefacts real images carry: hairs crossing
lesion and skin, gel bubbles, the dermoscope's circular vignette, uneven light,
blur and sensor noise. The mask is the lesion polygon itself, so it is exact.

The same seed always gives the same image (``numpy.random.default_rng``);
seeds may be ints or tuples of ints, e.g. ``(seed, subset, index)``.
"""
import csv
import logging
import os

import cv2
import numpy as np

from skinlesion import schemes

log = logging.getLogger(__name__)

# Diagnoses the generator can draw (canonical names from schemes.DIAGNOSES).
SYNTHETIC_DIAGNOSES = ("common_nevus", "atypical_nevus", "melanoma", "seborrheic_keratosis",
                       "bcc", "akiec", "bkl", "df", "vasc")

# For each scheme class, the synthetic diagnoses that stand for it (drawn
# uniformly from the list; repeats weight the draw).
SCHEME_SOURCES = {
    "lesion": {"lesion": SYNTHETIC_DIAGNOSES},
    "isic2017": {"melanoma": ("melanoma",), "seborrheic_keratosis": ("seborrheic_keratosis",),
                 "nevus": ("common_nevus", "common_nevus", "common_nevus", "atypical_nevus")},
    "isic2018": {"MEL": ("melanoma",),
                 "NV": ("common_nevus", "common_nevus", "common_nevus", "atypical_nevus"),
                 "BCC": ("bcc",), "AKIEC": ("akiec",), "BKL": ("bkl", "seborrheic_keratosis"),
                 "DF": ("df",), "VASC": ("vasc",)},
    "binary": {"benign": ("common_nevus", "atypical_nevus", "seborrheic_keratosis", "bkl", "df", "vasc"),
               "malignant": ("melanoma", "melanoma", "bcc", "akiec")},
    "ph2": {"common_nevus": ("common_nevus",), "atypical_nevus": ("atypical_nevus",),
            "melanoma": ("melanoma",)},
}

# Lesion geometry per diagnosis: area fraction range, ellipse aspect range,
# (low-order harmonic amplitude range, orders), (high-order ...), notch count
# range, border blur (pixels at 256 px).
SHAPES = {
    "common_nevus":         dict(area=(0.10, 0.25), aspect=(1.0, 1.2), low=(0.0, 0.025), high=(0.0, 0.006), notches=(0, 0), edge=1.0),
    "atypical_nevus":       dict(area=(0.20, 0.40), aspect=(1.0, 1.35), low=(0.03, 0.07), high=(0.005, 0.015), notches=(0, 1), edge=1.8),
    "melanoma":             dict(area=(0.20, 0.50), aspect=(1.0, 1.5), low=(0.07, 0.16), high=(0.015, 0.045), notches=(2, 5), edge=1.5),
    "seborrheic_keratosis": dict(area=(0.15, 0.35), aspect=(1.1, 1.5), low=(0.02, 0.05), high=(0.008, 0.02), notches=(0, 0), edge=0.7),
    "bcc":                  dict(area=(0.15, 0.35), aspect=(1.0, 1.4), low=(0.04, 0.09), high=(0.01, 0.025), notches=(0, 2), edge=2.0),
    "akiec":                dict(area=(0.15, 0.40), aspect=(1.0, 1.5), low=(0.04, 0.10), high=(0.01, 0.03), notches=(0, 2), edge=3.5),
    "bkl":                  dict(area=(0.15, 0.35), aspect=(1.0, 1.4), low=(0.02, 0.06), high=(0.005, 0.02), notches=(0, 1), edge=1.0),
    "df":                   dict(area=(0.10, 0.16), aspect=(1.0, 1.2), low=(0.01, 0.03), high=(0.0, 0.008), notches=(0, 0), edge=3.0),
    "vasc":                 dict(area=(0.12, 0.30), aspect=(1.0, 1.3), low=(0.05, 0.10), high=(0.005, 0.015), notches=(0, 0), edge=1.2),
}

# Skin tones from light to dark (RGB as seen under a dermoscope's light).
SKIN_TONES = np.array([[242, 205, 188], [226, 178, 150], [205, 150, 118],
                       [170, 118, 88], [128, 86, 62]], np.float32)


# --------------------------------------------------------------------------- helpers

def _smooth_noise(rng, height, width, cells, channels=1):
    """Smooth random field, float32 [H, W, channels], roughly zero mean and unit std.

    cells: grid resolution of the underlying random values (higher = finer).
    """
    cells_y = max(2, int(round(cells * height / max(height, width))))
    cells_x = max(2, int(round(cells * width / max(height, width))))
    grid = rng.standard_normal((cells_y, cells_x, channels)).astype(np.float32)
    field = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return field.reshape(height, width, channels)


def _mix(base, colour, weight):
    """Blend ``colour`` [3] into ``base`` [H, W, 3] with per-pixel ``weight`` [H, W] in [0, 1]."""
    weight = weight[..., None]
    return base * (1.0 - weight) + np.asarray(colour, np.float32) * weight


def _jitter(rng, colour, amount=12.0):
    """A colour [3] varied mostly in brightness (keeps its hue), by about ``amount`` levels."""
    colour = np.asarray(colour, np.float32)
    brightness = rng.uniform(-amount, amount) / max(float(colour.mean()), 1.0)
    return np.clip(colour * (1.0 + brightness) + rng.uniform(-amount / 3, amount / 3, 3), 0, 255)


def _random_point_in(rng, mask, near_border=None, dist=None):
    """(x, y) of a random True pixel of ``mask`` [H, W]; optionally where dist < near_border."""
    candidates = mask if near_border is None else mask & (dist < near_border)
    ys, xs = np.nonzero(candidates)
    if len(ys) == 0:
        ys, xs = np.nonzero(mask)
    pick = rng.integers(len(ys))
    return int(xs[pick]), int(ys[pick])


def resolve_diagnosis(diagnosis, scheme, rng):
    """Turn a diagnosis request into one of SYNTHETIC_DIAGNOSES.

    diagnosis: a synthetic diagnosis, a class name of ``scheme`` (e.g. "MEL",
    "malignant": one of its sources is drawn with ``rng``) or an alias known to
    schemes.FOLDER_ALIASES ("nevus" -> common_nevus).
    """
    if diagnosis in SYNTHETIC_DIAGNOSES:
        return diagnosis
    sources = SCHEME_SOURCES[schemes.check_scheme_name(scheme)]
    if diagnosis in sources:
        options = sources[diagnosis]
        return options[rng.integers(len(options))]
    canonical = schemes.normalise_raw("folder", diagnosis)
    if canonical == "nevus":
        return "common_nevus"
    if canonical in SYNTHETIC_DIAGNOSES:
        return canonical
    raise ValueError(f"diagnosis={diagnosis!r}: not a synthetic diagnosis ({', '.join(SYNTHETIC_DIAGNOSES)}) "
                     f"nor a class of scheme {scheme!r} ({', '.join(sources)})")


def _class_weights(scheme, weights):
    """Normalised probabilities [K] over the classes of ``scheme`` from a weights dict/sequence."""
    names = schemes.class_names(scheme) if scheme != "lesion" else SYNTHETIC_DIAGNOSES
    if weights is None:
        return names, np.full(len(names), 1.0 / len(names))
    if isinstance(weights, dict):
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(f"weights: unknown class names {sorted(unknown)} for scheme {scheme!r}; "
                             f"use {', '.join(names)}")
        values = np.array([float(weights.get(n, 0.0)) for n in names])
    else:
        values = np.asarray(weights, np.float64)
        if values.shape != (len(names),):
            raise ValueError(f"weights: expected {len(names)} numbers for {', '.join(names)}, "
                             f"got {values.shape}")
    if (values < 0).any() or values.sum() <= 0:
        raise ValueError(f"weights={weights!r}: must be >= 0 with a positive sum")
    return names, values / values.sum()


def plan_diagnoses(count, scheme="lesion", weights=None, seed=0):
    """The class requested for each of ``count`` images: exactly balanced by default.

    With weights=None the classes of ``scheme`` (for "lesion": every synthetic
    diagnosis) are cycled in a seeded order, so counts differ by at most one.
    With weights (dict class -> weight, or one number per class) each image's
    class is drawn independently. Returns a list [count] of names that
    generate(..., diagnosis=name, scheme=scheme) accepts.
    """
    names, probs = _class_weights(scheme, weights)
    rng = np.random.default_rng([int(s) for s in np.atleast_1d(seed)] + [7919])
    if weights is None:
        order = list(rng.permutation(len(names)))
        return [names[order[i % len(names)]] for i in range(count)]
    return [names[i] for i in rng.choice(len(names), size=count, p=probs)]


# --------------------------------------------------------------------------- lesion shape

def _lesion_polygon(rng, diagnosis, height, width):
    """Lesion outline as float32 [P, 2] (x, y) points; shape statistics follow SHAPES."""
    spec = SHAPES[diagnosis]
    area = rng.uniform(*spec["area"]) * height * width
    radius = np.sqrt(area / np.pi)
    theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    aspect = rng.uniform(*spec["aspect"])
    tilt = rng.uniform(0, np.pi)
    a, b = np.sqrt(aspect), 1.0 / np.sqrt(aspect)
    ellipse = 1.0 / np.sqrt((np.cos(theta - tilt) / a) ** 2 + (np.sin(theta - tilt) / b) ** 2)
    wobble = np.zeros_like(theta)
    for order in range(1, 5):
        if order == 1 and diagnosis != "melanoma":
            continue  # an order-1 term shifts the shape off centre: asymmetry is melanoma's
        wobble += rng.uniform(*spec["low"]) * np.cos(order * theta + rng.uniform(0, 2 * np.pi))
    for order in range(5, 16):
        wobble += rng.uniform(*spec["high"]) * np.cos(order * theta + rng.uniform(0, 2 * np.pi))
    for _ in range(rng.integers(spec["notches"][0], spec["notches"][1] + 1)):
        centre, spread = rng.uniform(0, 2 * np.pi), rng.uniform(0.08, 0.25)
        angle = np.angle(np.exp(1j * (theta - centre)))
        wobble -= rng.uniform(0.08, 0.22) * np.exp(-0.5 * (angle / spread) ** 2)
    if diagnosis == "vasc":  # lobulated outline
        wobble += 0.06 * np.abs(np.cos(rng.integers(3, 6) * theta / 2 + rng.uniform(0, np.pi)))
    r = radius * ellipse * np.clip(1.0 + wobble, 0.45, None)

    # Keep the lesion inside the frame: shrink it if the offset centre would cut it.
    cx = width / 2 + rng.uniform(-0.12, 0.12) * width
    cy = height / 2 + rng.uniform(-0.12, 0.12) * height
    xs, ys = r * np.cos(theta), r * np.sin(theta)
    margin = 0.04 * min(height, width)
    room = min((cx - margin) / max(-xs.min(), 1e-6), (width - margin - cx) / max(xs.max(), 1e-6),
               (cy - margin) / max(-ys.min(), 1e-6), (height - margin - cy) / max(ys.max(), 1e-6))
    if room < 1.0:
        xs, ys = xs * room, ys * room
    return np.stack([cx + xs, cy + ys], axis=1).astype(np.float32)


def _rasterise(polygon, height, width):
    """Fill a polygon [P, 2] (x, y) into a bool mask [H, W] with sub-pixel vertex precision."""
    canvas = np.zeros((height, width), np.uint8)
    points = np.round(polygon * 16).astype(np.int32)[None]
    cv2.fillPoly(canvas, points, 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


# --------------------------------------------------------------------------- lesion colours

def _paint_lesion(rng, diagnosis, mask, depth, scale):
    """Lesion colour field float32 [H, W, 3] and opacity [H, W] for one diagnosis.

    mask: bool [H, W]; depth: float32 [H, W], 0 at the border rising to 1 at
    the lesion's deepest point; scale: pixel size relative to a 256 px image.
    """
    height, width = mask.shape
    hf = _smooth_noise(rng, height, width, max(8, int(40 * scale)))[..., 0]
    lf = _smooth_noise(rng, height, width, 5)[..., 0]
    opacity = np.full((height, width), 0.95, np.float32)
    network = (np.abs(_smooth_noise(rng, height, width, max(8, int(34 * scale)))[..., 0]) < 0.22)
    network = network.astype(np.float32)

    if diagnosis in ("common_nevus", "atypical_nevus"):
        dark = _jitter(rng, (108, 60, 36), 15) if diagnosis == "common_nevus" else _jitter(rng, (88, 48, 30), 15)
        light = _jitter(rng, (168, 108, 68), 12)
        if diagnosis == "common_nevus":
            colour = _mix(np.broadcast_to(light, (height, width, 3)).copy(), dark, np.clip(depth * 1.2, 0, 1) * 0.6)
            colour *= (1.0 + 0.03 * lf)[..., None]
            colour *= (1.0 - 0.08 * network * (1 - depth))[..., None]
        else:
            # Eccentric dark centre and irregular network: the "atypical" look.
            shifted = np.clip(depth + 0.35 * lf, 0, 1)
            colour = _mix(np.broadcast_to(light, (height, width, 3)).copy(), dark, shifted)
            colour = _mix(colour, _jitter(rng, (184, 128, 90), 10), np.clip(0.6 - 2.0 * depth, 0, 1) * 0.5)
            colour *= (1.0 + 0.06 * lf)[..., None]
            colour *= (1.0 - 0.18 * network * np.clip(1.5 - depth, 0, 1))[..., None]
        opacity[:] = 0.92

    elif diagnosis == "melanoma":
        colour = np.broadcast_to(_jitter(rng, (85, 52, 38), 15), (height, width, 3)).copy()
        palette = [(30, 22, 22), (105, 118, 140), (170, 68, 66), (168, 118, 80), (205, 195, 195),
                   (60, 36, 28)]
        for index in rng.permutation(len(palette))[: rng.integers(3, 6)]:
            field = _smooth_noise(rng, height, width, rng.integers(4, 9))[..., 0]
            weight = np.clip((field - rng.uniform(0.2, 0.7)) * 2.0, 0, 1) * rng.uniform(0.7, 1.0)
            colour = _mix(colour, _jitter(rng, palette[index], 10), weight)
        colour *= (1.0 - 0.22 * network * np.clip(1.3 - depth, 0, 1))[..., None]
        colour *= (1.0 + 0.05 * hf)[..., None]
        for _ in range(rng.integers(10, 40)):  # irregular dots and globules, mostly peripheral
            x, y = _random_point_in(rng, mask, 0.45, depth)
            r = max(1, int(round(rng.uniform(1.0, 3.0) * scale)))
            cv2.circle(colour, (x, y), r, _jitter(rng, (25, 18, 18), 10).tolist(), -1, cv2.LINE_AA)

    elif diagnosis in ("seborrheic_keratosis", "bkl"):
        base = (188, 138, 92) if diagnosis == "seborrheic_keratosis" else (172, 116, 76)
        colour = np.broadcast_to(_jitter(rng, base, 15), (height, width, 3)).copy()
        if diagnosis == "seborrheic_keratosis":
            # Cerebriform, waxy surface: ridges from banded fine noise.
            ridges = np.abs(np.sin(hf * 2.5))
            colour *= (0.88 + 0.18 * ridges)[..., None]
            for _ in range(rng.integers(6, 18)):  # crypts (comedo-like openings)
                x, y = _random_point_in(rng, mask)
                axes = (max(1, int(rng.uniform(1.5, 4.0) * scale)), max(1, int(rng.uniform(1.0, 2.5) * scale)))
                cv2.ellipse(colour, (x, y), axes, rng.uniform(0, 180), 0, 360,
                            _jitter(rng, (88, 62, 38), 10).tolist(), -1, cv2.LINE_AA)
            for _ in range(rng.integers(6, 20)):  # milia-like cysts: bright round dots
                x, y = _random_point_in(rng, mask)
                r = max(1, int(round(rng.uniform(1.2, 2.8) * scale)))
                cv2.circle(colour, (x, y), r, _jitter(rng, (240, 235, 205), 8).tolist(), -1, cv2.LINE_AA)
        else:
            colour *= (1.0 + 0.08 * lf + 0.04 * hf)[..., None]
            colour *= (1.0 - 0.1 * network)[..., None]
        opacity[:] = 0.95

    elif diagnosis == "bcc":
        colour = np.broadcast_to(_jitter(rng, (222, 150, 150), 10), (height, width, 3)).copy()
        colour = _mix(colour, (240, 228, 228), np.clip(lf - 0.6, 0, 1))  # shiny white areas
        for _ in range(rng.integers(0, 4)):  # blue-grey ovoid nests
            x, y = _random_point_in(rng, mask)
            axes = (max(2, int(rng.uniform(3, 7) * scale)), max(2, int(rng.uniform(2, 5) * scale)))
            cv2.ellipse(colour, (x, y), axes, rng.uniform(0, 180), 0, 360,
                        _jitter(rng, (95, 105, 125), 10).tolist(), -1, cv2.LINE_AA)
        _draw_vessels(rng, colour, mask, scale)
        opacity[:] = rng.uniform(0.7, 0.85)

    elif diagnosis == "akiec":
        colour = np.broadcast_to(_jitter(rng, (200, 100, 90), 15), (height, width, 3)).copy()
        colour *= (1.0 + 0.06 * lf)[..., None]
        scales = np.clip((hf - rng.uniform(0.3, 0.8)) * 1.5, 0, 1)  # whitish-yellow scale
        colour = _mix(colour, _jitter(rng, (228, 216, 190), 8), scales)
        opacity[:] = 0.85

    elif diagnosis == "df":
        colour = np.broadcast_to(_jitter(rng, (150, 104, 74), 12), (height, width, 3)).copy()
        colour *= (1.0 - 0.15 * network)[..., None]
        centre = np.clip((depth - rng.uniform(0.35, 0.55)) * 4.0, 0, 1)
        colour = _mix(colour, _jitter(rng, (232, 222, 210), 6), centre * (0.8 + 0.2 * np.tanh(lf)))
        opacity[:] = 0.9

    elif diagnosis == "vasc":
        colour = np.broadcast_to(_jitter(rng, (200, 140, 150), 10), (height, width, 3)).copy()
        lacuna_colours = [(185, 30, 50), (110, 35, 80), (125, 22, 38), (150, 40, 90)]
        ys, xs = np.nonzero(mask)
        extent = np.sqrt(len(ys) / np.pi)
        for _ in range(rng.integers(15, 40)):
            x, y = _random_point_in(rng, mask)
            r = max(2, int(round(rng.uniform(0.08, 0.2) * extent)))
            cv2.circle(colour, (x, y), r, _jitter(rng, lacuna_colours[rng.integers(4)], 10).tolist(),
                       -1, cv2.LINE_AA)
        opacity[:] = 0.95
    else:
        raise ValueError(f"diagnosis={diagnosis!r}: choose one of {', '.join(SYNTHETIC_DIAGNOSES)}")
    return colour, opacity


def _draw_vessels(rng, canvas, mask, scale):
    """Draw branching (arborizing) red vessels inside ``mask`` onto ``canvas`` [H, W, 3] in place."""
    ys, xs = np.nonzero(mask)
    extent = np.sqrt(len(ys) / np.pi)
    stack = []
    for _ in range(rng.integers(2, 5)):
        x, y = _random_point_in(rng, mask)
        stack.append((float(x), float(y), rng.uniform(0, 2 * np.pi), 2.2 * scale, 0))
    colour = _jitter(rng, (165, 28, 40), 12).tolist()
    while stack:
        x, y, angle, thickness, generation = stack.pop()
        length = extent * rng.uniform(0.15, 0.35) / (1 + 0.5 * generation)
        points = [(x, y)]
        for _ in range(6):
            angle += rng.uniform(-0.5, 0.5)
            x += np.cos(angle) * length / 6
            y += np.sin(angle) * length / 6
            points.append((x, y))
        cv2.polylines(canvas, [np.round(np.array(points) * 16).astype(np.int32)], False, colour,
                      max(1, int(round(thickness))), cv2.LINE_AA, shift=4)
        if generation < 3:
            for _ in range(rng.integers(1, 3)):
                stack.append((x, y, angle + rng.uniform(-1.0, 1.0), thickness * 0.7, generation + 1))


# --------------------------------------------------------------------------- artefacts

def _draw_hairs(rng, image, centre, scale):
    """Draw 0-8 thin dark curved hairs, many through the lesion area, onto image [H, W, 3] in place."""
    height, width = image.shape[:2]
    if rng.random() < 0.3:
        return
    length = 1.5 * max(height, width)
    for _ in range(rng.integers(1, 9)):
        through = np.array(centre, np.float64) + rng.normal(0, 0.25, 2) * (width, height)
        angle = rng.uniform(0, np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        start = through - direction * length * rng.uniform(0.2, 0.5)
        end = through + direction * length * rng.uniform(0.2, 0.5)
        bend = np.array([-direction[1], direction[0]]) * rng.normal(0, 0.15) * length
        t = np.linspace(0, 1, 40)[:, None]
        curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * (through + bend) + t ** 2 * end
        shade = rng.uniform(20, 70)
        colour = [shade * 1.1, shade * 0.9, shade * 0.8]
        thickness = max(1, int(round(rng.uniform(0.6, 1.8) * scale)))
        cv2.polylines(image, [np.round(curve * 16).astype(np.int32)], False, colour, thickness,
                      cv2.LINE_AA, shift=4)


def _draw_bubbles(rng, image, scale):
    """Blend 0-3 gel bubbles (bright thin rings with a highlight) into image [H, W, 3] in place."""
    height, width = image.shape[:2]
    count = rng.choice([0, 0, 1, 2, 3])
    if count == 0:
        return
    overlay = image.copy()
    for _ in range(count):
        r = int(rng.uniform(0.03, 0.15) * min(height, width))
        x, y = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        cv2.circle(overlay, (x, y), r, (245, 245, 240), max(1, int(round(1.3 * scale))), cv2.LINE_AA)
        cv2.circle(overlay, (x - r // 3, y - r // 3), max(1, r // 6), (250, 250, 250), -1, cv2.LINE_AA)
    cv2.addWeighted(overlay, 0.65, image, 0.35, 0, dst=image)


def _vignette(rng, height, width):
    """Per-pixel light factor float32 [H, W]: the dermoscope's dark corners, or a soft fall-off."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cy = height / 2 + rng.uniform(-0.05, 0.05) * height
    cx = width / 2 + rng.uniform(-0.05, 0.05) * width
    dist = np.sqrt(((yy - cy) / (height / 2)) ** 2 + ((xx - cx) / (width / 2)) ** 2)
    if rng.random() < 0.75:
        edge, soft = rng.uniform(1.0, 1.35), rng.uniform(0.04, 0.15)
        return 1.0 - rng.uniform(0.85, 0.97) * np.clip((dist - edge) / soft, 0, 1)
    return 1.0 - rng.uniform(0.15, 0.4) * np.clip(dist / np.sqrt(2), 0, 1) ** 2


# --------------------------------------------------------------------------- public API

def generate(index_or_seed, size=(256, 256), diagnosis=None, scheme="lesion", weights=None,
             artefacts=True):
    """Draw one synthetic dermoscopy image with its exact mask and diagnosis.

    index_or_seed: int or tuple of ints; the same value always gives the same image.
    size: (H, W) in pixels.
    diagnosis: None to draw a class of ``scheme`` (by ``weights``, default
        uniform), or a synthetic diagnosis / class name of ``scheme`` / alias.
    scheme: class scheme the random draw is balanced over (schemes.SCHEMES).
    weights: optional dict {class name: weight} or one weight per class.
    artefacts: False for a clean image (no hairs, bubbles, vignette, blur).

    Returns (image uint8 [H, W, 3] RGB, mask bool [H, W], diagnosis str, one of
    SYNTHETIC_DIAGNOSES).
    """
    height, width = int(size[0]), int(size[1])
    if height < 16 or width < 16:
        raise ValueError(f"size={size!r}: need at least 16x16 pixels")
    rng = np.random.default_rng(index_or_seed)
    if diagnosis is None:
        names, probs = _class_weights(scheme, weights)
        diagnosis = names[rng.choice(len(names), p=probs)]
    diagnosis = resolve_diagnosis(diagnosis, scheme, rng)
    scale = min(height, width) / 256.0

    # Skin: a tone between two neighbours of SKIN_TONES, mottled at low frequency.
    tone = rng.uniform(0, len(SKIN_TONES) - 1)
    low = int(np.floor(tone))
    skin_colour = SKIN_TONES[low] + (SKIN_TONES[min(low + 1, len(SKIN_TONES) - 1)] - SKIN_TONES[low]) * (tone - low)
    skin_colour = skin_colour + rng.uniform(-8, 8, 3) + np.array([rng.uniform(0, 10), 0, 0])
    mottling = 0.035 * _smooth_noise(rng, height, width, 6, 1) + 0.015 * _smooth_noise(rng, height, width, 24, 3)
    image = skin_colour[None, None, :].astype(np.float32) * (1.0 + mottling)

    polygon = _lesion_polygon(rng, diagnosis, height, width)
    mask = _rasterise(polygon, height, width)
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    depth = depth / max(float(depth.max()), 1.0)
    colour, opacity = _paint_lesion(rng, diagnosis, mask, depth, scale)

    # Soft border: blur the exact mask; its 0.5 level stays on the polygon.
    sigma = SHAPES[diagnosis]["edge"] * scale * rng.uniform(0.7, 1.3)
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma) if sigma > 0.3 else mask.astype(np.float32)
    weight = (alpha * opacity)[..., None]
    image = image * (1.0 - weight) + colour * weight

    if artefacts:
        _draw_hairs(rng, image, polygon.mean(axis=0), scale)
        _draw_bubbles(rng, image, scale)
        tilt = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = (np.cos(tilt) * (xx / width - 0.5) + np.sin(tilt) * (yy / height - 0.5))
        image *= (_vignette(rng, height, width) * (1.0 + rng.uniform(0, 0.15) * ramp))[..., None]
        if rng.random() < 0.5:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.2) * scale)
        image += rng.normal(0, rng.uniform(1.0, 3.0), image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), mask, diagnosis


def write_folder(root, n, size=(256, 256), seed=0, scheme="lesion", weights=None, image_format="png"):
    """Write ``n`` synthetic images as a ``folder`` layout and return one row per image.

    Writes root/images/synth_00000.<image_format>, root/masks/synth_00000_segmentation.png
    (mode L, 0/255) and root/labels.csv (image,label with the canonical
    diagnosis). Diagnoses are balanced over ``scheme`` unless ``weights`` is
    given. Returns [{"image": file name, "label": diagnosis, "seed": (seed, i)}].
    """
    from PIL import Image
    if image_format not in ("png", "jpg", "bmp"):
        raise ValueError(f"image_format={image_format!r}: use png, jpg or bmp")
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    plan = plan_diagnoses(n, scheme, weights, seed)
    rows = []
    for index, wanted in enumerate(plan):
        image, mask, diagnosis = generate((seed, index), size, diagnosis=wanted, scheme=scheme)
        stem = f"synth_{index:05d}"
        name = f"{stem}.{image_format}"
        options = {"quality": 92} if image_format == "jpg" else {}
        Image.fromarray(image).save(os.path.join(root, "images", name), **options)
        Image.fromarray(mask.astype(np.uint8) * 255).save(
            os.path.join(root, "masks", f"{stem}_segmentation.png"))
        rows.append({"image": name, "label": diagnosis, "seed": (seed, index)})
    with open(os.path.join(root, "labels.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label"])
        for row in rows:
            writer.writerow([row["image"], row["label"]])
    log.info("Wrote %d synthetic images to %s", n, root)
    return rows


def write_samples(out_dir, size=(384, 384), diagnoses=("melanoma", "common_nevus",
                                                       "seborrheic_keratosis", "bcc"), seed=2024):
    """Write one demo JPEG per diagnosis to ``out_dir`` (samples/synthetic_<diagnosis>.jpg).

    Returns the written paths. JPEG keeps each file well under 200 KB.
    """
    from PIL import Image
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for index, diagnosis in enumerate(diagnoses):
        image, _, _ = generate((seed, index), size, diagnosis=diagnosis)
        path = os.path.join(out_dir, f"synthetic_{diagnosis}.jpg")
        Image.fromarray(image).save(path, quality=90)
        paths.append(path)
    return paths
