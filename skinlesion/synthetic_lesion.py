"""Synthetic dermoscopy, the lesion: its outline, exact mask and diagnosis-specific colours.

``draw_lesion`` puts one lesion onto a skin image: an outline whose size,
aspect, border irregularity and notches follow SHAPES for the diagnosis, the
exact mask rasterised from it, and a colour field per diagnosis (nevus:
uniform brown; melanoma: variegated with dots; seborrheic keratosis: waxy
with crypts and milia; BCC: pink with branching vessels; ...) blended in
through a soft border. Every function draws from the ``rng`` it is given, in
a fixed order, so skinlesion.synthetic.generate stays deterministic per seed.
"""
import cv2
import numpy as np

from skinlesion.synthetic_skin import smooth_noise

# Diagnoses the generator can draw (canonical names from schemes.DIAGNOSES).
SYNTHETIC_DIAGNOSES = ("common_nevus", "atypical_nevus", "melanoma", "seborrheic_keratosis",
                       "bcc", "akiec", "bkl", "df", "vasc")

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


def lesion_polygon(rng, diagnosis, height, width):
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


def rasterise(polygon, height, width):
    """Fill a polygon [P, 2] (x, y) into a bool mask [H, W] with sub-pixel vertex precision."""
    canvas = np.zeros((height, width), np.uint8)
    points = np.round(polygon * 16).astype(np.int32)[None]
    cv2.fillPoly(canvas, points, 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


# --------------------------------------------------------------------------- lesion colours

def paint_lesion(rng, diagnosis, mask, depth, scale, built_in_structures=True):
    """Lesion colour field float32 [H, W, 3] and opacity [H, W] for one diagnosis.

    mask: bool [H, W]; depth: float32 [H, W], 0 at the border rising to 1 at
    the lesion's deepest point; scale: pixel size relative to a 256 px image.
    built_in_structures: False leaves out the marks that would pass for
    labelled structures (the network texture, melanoma's dots and blue-grey /
    white blotches, SK's milia-like dots) so skinlesion.synthetic_structures alone decides them; the same
    random numbers are drawn either way, so everything else stays the same.
    """
    height, width = mask.shape
    hf = smooth_noise(rng, height, width, max(8, int(40 * scale)))[..., 0]
    lf = smooth_noise(rng, height, width, 5)[..., 0]
    opacity = np.full((height, width), 0.95, np.float32)
    network = (np.abs(smooth_noise(rng, height, width, max(8, int(34 * scale)))[..., 0]) < 0.22)
    network = network.astype(np.float32) * float(built_in_structures)

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
            field = smooth_noise(rng, height, width, rng.integers(4, 9))[..., 0]
            weight = np.clip((field - rng.uniform(0.2, 0.7)) * 2.0, 0, 1) * rng.uniform(0.7, 1.0)
            tint = _jitter(rng, palette[index], 10)
            if built_in_structures or index not in (1, 4):  # blue-grey, white: would pass for veil / regression
                colour = _mix(colour, tint, weight)
        colour *= (1.0 - 0.22 * network * np.clip(1.3 - depth, 0, 1))[..., None]
        colour *= (1.0 + 0.05 * hf)[..., None]
        for _ in range(rng.integers(10, 40)):  # irregular dots and globules, mostly peripheral
            x, y = _random_point_in(rng, mask, 0.45, depth)
            r = max(1, int(round(rng.uniform(1.0, 3.0) * scale)))
            dot_colour = _jitter(rng, (25, 18, 18), 10).tolist()
            if built_in_structures:
                cv2.circle(colour, (x, y), r, dot_colour, -1, cv2.LINE_AA)

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
                milium_colour = _jitter(rng, (240, 235, 205), 8).tolist()
                if built_in_structures:
                    cv2.circle(colour, (x, y), r, milium_colour, -1, cv2.LINE_AA)
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



def draw_lesion(rng, image, diagnosis, scale, built_in_structures=True):
    """Blend one lesion of ``diagnosis`` into the skin ``image`` float32 [H, W, 3].

    scale: pixel size relative to a 256 px image; built_in_structures: see
    paint_lesion. Returns (image float32
    [H, W, 3], a new array; mask bool [H, W], exactly the lesion outline;
    polygon float32 [P, 2] (x, y), the outline itself).
    """
    height, width = image.shape[:2]
    polygon = lesion_polygon(rng, diagnosis, height, width)
    mask = rasterise(polygon, height, width)
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    depth = depth / max(float(depth.max()), 1.0)
    colour, opacity = paint_lesion(rng, diagnosis, mask, depth, scale, built_in_structures)

    # Soft border: blur the exact mask; its 0.5 level stays on the polygon.
    sigma = SHAPES[diagnosis]["edge"] * scale * rng.uniform(0.7, 1.3)
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma) if sigma > 0.3 else mask.astype(np.float32)
    weight = (alpha * opacity)[..., None]
    image = image * (1.0 - weight) + colour * weight
    return image, mask, polygon
