"""Synthetic dermoscopy, the structures a dermoscopist reads, with their masks.

``draw_structures`` paints, inside a lesion already drawn by
skinlesion.synthetic_lesion, the criteria of skinlesion.criteria: pigment
network (typical: a thin regular honeycomb fading towards the border;
atypical: thick, dark, irregular holes, patchy with abrupt ends),
dots/globules (typical: small even round dots; atypical: varied, clustered
towards the border), streaks (radial lines across the border), a
blue-whitish veil, regression (white scar-like area and/or blue-grey
peppering), milia-like cysts and negative network. Which ones appear is
drawn per image from STRUCTURE_PROBABILITIES for the diagnosis, with the
generator's own structures stream (``structure_rng``), so the base lesion
does not depend on them and a model has to read the pixels to tell them.

Each structure's mask is the area it covers (ISIC 2018 Task 2 masks outline
regions, not single strokes): inside the lesion mask, except streaks, which
may reach ``streak_allowance`` pixels past the border they cross.

When structures are drawn, the lesion is painted without the marks that
would pass for them (paint_lesion(built_in_structures=False): no network
texture, no melanoma dots or blue-grey / white blotches, no SK milia), so
every structure in the image is one that is labelled.
"""
import cv2
import numpy as np

from skinlesion.synthetic_lesion import _jitter, _mix
from skinlesion.synthetic_skin import smooth_noise

# Added to the image seed for the structures stream: the base lesion's
# stream is left exactly as skinlesion.synthetic.generate draws it.
STRUCTURE_STREAM = 20182

# Per diagnosis, the probability of each structure. network: a pigment
# network is drawn; atypical_network: it is atypical, given drawn;
# typical_globules / atypical_globules: the dots/globules level (else
# absent); the rest: present. Melanocytic lesions always show a network
# (PH2 grades every lesion's network T or AT); melanoma favours the atypical
# forms, veil, streaks and regression; SK shows milia-like cysts.
STRUCTURE_NAMES = ("network", "atypical_network", "typical_globules", "atypical_globules", "streaks", "veil",
                   "regression", "milia", "negative_network")
_QUIET = dict(network=0.05, atypical_network=0.2, typical_globules=0.03, atypical_globules=0.03, streaks=0.02,
              veil=0.03, regression=0.05, milia=0.05, negative_network=0.02)
STRUCTURE_PROBABILITIES = {
    "common_nevus": dict(network=1.0, atypical_network=0.1, typical_globules=0.4, atypical_globules=0.05,
                         streaks=0.03, veil=0.02, regression=0.03, milia=0.1, negative_network=0.03),
    "atypical_nevus": dict(network=1.0, atypical_network=0.55, typical_globules=0.3, atypical_globules=0.35,
                           streaks=0.1, veil=0.1, regression=0.12, milia=0.1, negative_network=0.1),
    "melanoma": dict(network=1.0, atypical_network=0.85, typical_globules=0.1, atypical_globules=0.55,
                     streaks=0.45, veil=0.6, regression=0.45, milia=0.05, negative_network=0.3),
    "seborrheic_keratosis": {**_QUIET, "network": 0.1, "milia": 0.8},
    "bkl": {**_QUIET, "network": 0.35, "regression": 0.15, "milia": 0.3},
    "bcc": {**_QUIET, "veil": 0.1, "regression": 0.1},
    "akiec": dict(_QUIET),
    "df": {**_QUIET, "network": 0.6, "atypical_network": 0.1, "negative_network": 0.1},
    "vasc": {**_QUIET, "network": 0.02, "streaks": 0.0},
}

_DARK_BROWN, _BLACK, _BLUE_GRAY = (88, 52, 34), (34, 26, 26), (104, 118, 148)


def structure_rng(index_or_seed):
    """The structures' numpy Generator for an image seed (int or tuple of ints)."""
    return np.random.default_rng([int(s) for s in np.atleast_1d(index_or_seed)] + [STRUCTURE_STREAM])


def streak_allowance(scale):
    """Pixels past the lesion border a streak (and its mask) may reach."""
    return max(2, int(np.ceil(3 * scale)))


def _lesion_geometry(mask):
    """(depth float32 [H, W] 0 at the border to 1 deepest, centre (x, y), equivalent radius px)."""
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    depth = depth / max(float(depth.max()), 1.0)
    ys, xs = np.nonzero(mask)
    return depth, (float(xs.mean()), float(ys.mean())), float(np.sqrt(len(ys) / np.pi))


def _blob(rng, mask, depth, radius, size, min_depth=0.25):
    """bool [H, W]: a confluent patch inside ``mask`` about ``size`` x radius across, noisy outline."""
    height, width = mask.shape
    inner = mask & (depth > min_depth)
    ys, xs = np.nonzero(inner if inner.any() else mask)
    pick = rng.integers(len(ys))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    reach = max(size * radius, 2.0)
    distance = np.hypot(xx - xs[pick], yy - ys[pick]) / reach
    wobble = 0.35 * smooth_noise(rng, height, width, max(4, int(width / max(radius, 1.0) * 2)))[..., 0]
    region = mask & (distance + wobble < 1.0)
    region[ys[pick], xs[pick]] = True  # never empty
    return region


def _mesh(rng, mask, spacing, jitter, drop=0.0):
    """Cell edges of a jittered honeycomb over ``mask``'s box: bool [H, W] (1 px lines).

    spacing: hole size in pixels; jitter: point displacement as a fraction of
    spacing; drop: fraction of cell centres removed where a smooth field is
    high, which merges neighbours into larger, uneven holes.
    """
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    row_step = spacing * np.sqrt(3) / 2
    rows = np.arange(ys.min() - spacing, ys.max() + spacing, row_step)
    cols = np.arange(xs.min() - spacing, xs.max() + spacing, spacing)
    grid_x, grid_y = np.meshgrid(cols, rows)
    grid_x = grid_x + (np.arange(len(rows)) % 2)[:, None] * spacing / 2
    points = np.stack([grid_x.ravel(), grid_y.ravel()], 1) + rng.normal(0, jitter * spacing, (grid_x.size, 2))
    if drop > 0:
        field = smooth_noise(rng, height, width, 6)[..., 0]
        px = np.clip(np.round(points).astype(int), 0, [width - 1, height - 1])
        keep = rng.random(len(points)) > drop * np.clip(0.5 + field[px[:, 1], px[:, 0]], 0, 1.5)
        points = points[keep]
    points = np.round(points).astype(int)
    inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
    seeds = np.full((height, width), 255, np.uint8)
    seeds[points[inside, 1], points[inside, 0]] = 0
    _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    edges = np.zeros((height, width), bool)
    edges[1:] |= labels[1:] != labels[:-1]
    edges[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    return edges


def _thicken(edges, thickness):
    """float32 [H, W] line weight: ``edges`` bool [H, W] widened to ``thickness`` px, softened."""
    lines = edges.astype(np.uint8)
    if thickness > 1:
        lines = cv2.dilate(lines, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (thickness, thickness)))
    return cv2.GaussianBlur(lines.astype(np.float32), (0, 0), 0.5)


def pigment_network(rng, image, mask, depth, scale, atypical):
    """Paint a typical or atypical pigment network; returns (image float32 [H, W, 3], region bool [H, W])."""
    height, width = mask.shape
    if not atypical:
        edges = _mesh(rng, mask, max(4.0, 11.0 * scale), 0.12)
        envelope = np.clip(depth / 0.45, 0, 1) * mask  # fades out towards the border
        lines = _thicken(edges, max(1, int(round(1.2 * scale))))
        image = _lighten_holes(rng, image, lines, envelope * 0.3)
        weight = lines * envelope * rng.uniform(0.6, 0.75)
        return _mix(image, _jitter(rng, _DARK_BROWN, 10), weight), mask & (envelope > 0.25)
    edges = _mesh(rng, mask, max(4.0, 12.0 * scale) * rng.uniform(0.9, 1.3), 0.35, drop=0.45)
    region = mask & (smooth_noise(rng, height, width, 5)[..., 0] > rng.uniform(-0.9, -0.2))
    region |= _blob(rng, mask, depth, np.sqrt(mask.sum() / np.pi), 0.5)  # at least one solid patch
    thin = _thicken(edges, max(1, int(round(2.0 * scale))))
    thick = _thicken(edges, max(2, int(round(3.5 * scale))))
    lines = np.where(smooth_noise(rng, height, width, 7)[..., 0] > 0, thick, thin)
    image = _lighten_holes(rng, image, lines, region * 0.35)
    shade = np.clip(0.5 + 0.6 * smooth_noise(rng, height, width, 6), 0, 1)  # dark brown <-> black
    colour = np.asarray(_DARK_BROWN, np.float32) * (1 - shade) + np.asarray(_BLACK, np.float32) * shade
    weight = lines * region * 0.9  # abrupt ends: the region is cut, not faded
    return _mix(image, colour, weight), region


def _lighten_holes(rng, image, lines, strength):
    """Blend light brown into the holes between ``lines`` [H, W] by ``strength`` [H, W].

    A network on a dark base (melanoma) needs lighter holes to show at all;
    on a light brown base the blend changes little.
    """
    return _mix(image, _jitter(rng, (164, 108, 70), 8), strength * (1 - np.clip(lines, 0, 1)))


def dots_globules(rng, image, mask, depth, scale, atypical):
    """Paint typical or atypical dots/globules; returns (image float32 [H, W, 3], region bool [H, W])."""
    height, width = mask.shape
    if not atypical:
        spacing = max(5.0, 15.0 * scale)
        ys, xs = np.mgrid[spacing / 2:height:spacing, spacing / 2:width:spacing]
        points = np.stack([xs.ravel(), ys.ravel()], 1) + rng.uniform(-0.2, 0.2, (xs.size, 2)) * spacing
        points = np.round(points).astype(int).clip(0, [width - 1, height - 1])
        points = points[depth[points[:, 1], points[:, 0]] > 0.25]
        points = points[rng.random(len(points)) < rng.uniform(0.5, 0.9)]
        radius = max(1.4, rng.uniform(2.0, 2.6) * scale)
        colour = _jitter(rng, (80, 48, 30), 8).tolist()
        shapes = [((x, y), (radius, radius), 0.0, colour) for x, y in points]
    else:
        ys, xs = np.nonzero(mask & (depth < 0.5) & (depth > 0.08))
        if len(ys) == 0:
            ys, xs = np.nonzero(mask)
        centres = rng.integers(len(ys), size=rng.integers(1, 4))
        shapes = []
        for _ in range(rng.integers(10, 30)):
            centre = centres[rng.integers(len(centres))]
            x = int(np.clip(xs[centre] + rng.normal(0, 12 * scale), 0, width - 1))
            y = int(np.clip(ys[centre] + rng.normal(0, 12 * scale), 0, height - 1))
            if not mask[y, x]:
                continue
            axes = (max(1.0, rng.uniform(0.8, 4.5) * scale), max(1.0, rng.uniform(0.8, 3.5) * scale))
            tone = (_BLACK, _DARK_BROWN, _BLUE_GRAY)[rng.choice(3, p=(0.45, 0.4, 0.15))]
            shapes.append(((x, y), axes, rng.uniform(0, 180), _jitter(rng, tone, 8).tolist()))
    weight, colour = _ellipses(shapes, (height, width))
    region = cv2.dilate((weight > 0.25).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & mask
    return _mix(image, colour, weight * mask), region


def _ellipses(shapes, shape, factor=4):
    """Coverage float32 [H, W] and colour float32 [H, W, 3] of filled ellipses, drawn at ``factor`` x.

    shapes: [((x, y), (axis_x, axis_y), angle_deg, (r, g, b))] in pixels of
    the [H, W] ``shape``. Supersampling keeps 1-2 px dots round (drawn
    directly they come out as crosses).
    """
    height, width = shape
    cover = np.zeros((height * factor, width * factor), np.float32)
    paint = np.zeros((height * factor, width * factor, 3), np.float32)
    for (x, y), (ax, ay), angle, colour in shapes:
        centre = (int(round((x + 0.5) * factor - 0.5)), int(round((y + 0.5) * factor - 0.5)))
        axes = (max(1, int(round(ax * factor))), max(1, int(round(ay * factor))))
        cv2.ellipse(cover, centre, axes, angle, 0, 360, 1.0, -1)
        cv2.ellipse(paint, centre, axes, angle, 0, 360, [float(c) for c in colour], -1)
    cover = cv2.resize(cover, (width, height), interpolation=cv2.INTER_AREA)
    paint = cv2.resize(paint, (width, height), interpolation=cv2.INTER_AREA)
    return cover, paint / np.maximum(cover, 1e-6)[..., None]


def streaks(rng, image, mask, centre, radius, scale):
    """Paint radial streaks across part of the border; returns (image float32 [H, W, 3], region bool [H, W]).

    The region reaches at most ``streak_allowance(scale)`` pixels past the border.
    """
    height, width = mask.shape
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    border = max(contours, key=len)[:, 0, :].astype(np.float32)
    angles = np.arctan2(border[:, 1] - centre[1], border[:, 0] - centre[0])
    if rng.random() < 0.25:  # starburst: all round
        chosen = np.ones(len(border), bool)
    else:
        chosen = np.zeros(len(border), bool)
        for _ in range(rng.integers(1, 4)):
            middle, half = rng.uniform(-np.pi, np.pi), rng.uniform(0.35, 0.9)
            chosen |= np.abs(np.angle(np.exp(1j * (angles - middle)))) < half
    step = max(3, int(round(7 * scale)))
    allowance = streak_allowance(scale)
    weight = np.zeros((height, width), np.float32)
    thickness = max(1, int(round(1.4 * scale)))
    for index in np.nonzero(chosen)[0][::step]:
        point = border[index]
        direction = point - np.asarray(centre, np.float32)
        direction /= max(float(np.linalg.norm(direction)), 1e-6)
        start = point - direction * radius * rng.uniform(0.2, 0.38)
        end = point + direction * allowance * rng.uniform(0.3, 0.8)
        line = np.round(np.stack([start, end]) * 16).astype(np.int32)
        cv2.polylines(weight, [line], False, 1.0, thickness, cv2.LINE_AA, shift=4)
        if rng.random() < 0.3:  # pseudopod: a bulbous end
            cv2.circle(weight, tuple(int(v) for v in np.round(point)), thickness + 1, 1.0, -1, cv2.LINE_AA)
    near = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * allowance + 1, 2 * allowance + 1))).astype(bool)
    weight *= near
    colour = _jitter(rng, (_DARK_BROWN, _BLACK)[rng.integers(2)], 8)
    region = cv2.dilate((weight > 0.2).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & near
    return _mix(image, colour, weight * 0.9), region


def blue_whitish_veil(rng, image, mask, depth, radius, scale):
    """Paint a confluent blue-grey patch with a whitish haze; returns (image, region bool [H, W])."""
    height, width = mask.shape
    region = _blob(rng, mask, depth, radius, rng.uniform(0.45, 0.7))
    field = smooth_noise(rng, height, width, max(6, int(20 * scale)))[..., 0]
    # About a third of the patch is whitish haze, the rest blue-grey: both colours always show.
    haze = 0.2 + 0.7 / (1 + np.exp(-4 * (field - np.percentile(field[region], 65))))
    blue, white = _jitter(rng, _BLUE_GRAY, 8), _jitter(rng, (222, 224, 230), 6)
    colour = blue[None, None] * (1 - haze[..., None]) + white[None, None] * haze[..., None]
    weight = cv2.GaussianBlur(region.astype(np.float32), (0, 0), 1.2 * scale + 0.3) * region * 0.9
    return _mix(image, colour, weight), region


def regression(rng, image, mask, depth, radius, scale):
    """Paint a white scar-like area and/or blue-grey peppering; returns (image, region bool [H, W])."""
    height, width = mask.shape
    region = _blob(rng, mask, depth, radius, rng.uniform(0.4, 0.65))
    kind = rng.choice(("white", "pepper", "both"), p=(0.3, 0.3, 0.4))
    if kind != "pepper":
        weight = cv2.GaussianBlur(region.astype(np.float32), (0, 0), 2.0 * scale + 0.3) * region * 0.85
        image = _mix(image, _jitter(rng, (226, 216, 212), 6), weight)
    if kind != "white":
        ys, xs = np.nonzero(region)
        grains = np.zeros((height, width), np.float32)
        step = max(1.5, 2.5 * scale) ** 2
        for pick in rng.integers(len(ys), size=max(3, int(len(ys) / step * 0.5))):
            cv2.circle(grains, (int(xs[pick]), int(ys[pick])), max(0, int(round(0.6 * scale))), 1.0, -1)
        image = _mix(image, _jitter(rng, (92, 102, 126), 6), grains * region * 0.9)
    return image, region


def milia_like_cysts(rng, image, mask, depth, scale):
    """Paint white-yellow round spots; returns (image float32 [H, W, 3], region bool [H, W])."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask & (depth > 0.15))
    if len(ys) == 0:
        ys, xs = np.nonzero(mask)
    colour = _jitter(rng, (240, 234, 196), 6)
    count = rng.integers(5, 18)
    picks, radii = rng.integers(len(ys), size=count), np.maximum(1.0, rng.uniform(1.6, 3.4, count) * scale)
    shapes = [((float(xs[p]), float(ys[p])), (r, r), 0.0, colour) for p, r in zip(picks, radii)]
    weight, _ = _ellipses(shapes, (height, width))
    region = cv2.dilate((weight > 0.25).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & mask
    return _mix(image, colour, np.clip(weight, 0, 0.95) * mask), region


def negative_network(rng, image, mask, depth, radius, scale):
    """Paint light lines around dark holes over a patch; returns (image, region bool [H, W])."""
    region = _blob(rng, mask, depth, radius, rng.uniform(0.45, 0.75), min_depth=0.15)
    edges = _mesh(rng, region, max(5.0, 16.0 * scale), 0.25)
    lines = _thicken(edges, max(1, int(round(2.0 * scale))))
    image = _mix(image, _jitter(rng, (70, 40, 28), 8), region * (1 - lines) * 0.55)
    return _mix(image, _jitter(rng, (214, 184, 154), 6), region * lines * 0.85), region


def draw_structures(rng, image, mask, diagnosis, scale, probabilities=None):
    """Draw the structures chosen for one image inside its lesion.

    rng: the structures' Generator (``structure_rng``); image float32 [H, W,
    3] with the lesion drawn; mask bool [H, W], the lesion; probabilities:
    optional {name: probability} overriding STRUCTURE_PROBABILITIES[diagnosis]
    (e.g. all 0.5 to decouple structures from the diagnosis). Returns (image
    float32 [H, W, 3], a new array; masks {structure: bool [H, W]} for
    "pigment_network", "dots_globules", "streaks", "blue_whitish_veil",
    "regression_areas", "milia_like_cyst", "negative_network", only those
    drawn; levels {"pigment_network": typical / atypical, "dots_globules":
    typical / atypical} for those drawn).
    """
    odds = {**STRUCTURE_PROBABILITIES[diagnosis], **(probabilities or {})}
    unknown = set(odds) - set(STRUCTURE_NAMES)
    if unknown:
        raise ValueError(f"probabilities: unknown structures {sorted(unknown)}; use {', '.join(STRUCTURE_NAMES)}")
    # Decide everything first, with a fixed number of draws, so one choice
    # never shifts the random numbers of another.
    u = rng.random(9)
    network = u[0] < odds["network"]
    network_atypical = u[1] < odds["atypical_network"]
    globules = ("typical" if u[2] < odds["typical_globules"]
                else "atypical" if u[2] < odds["typical_globules"] + odds["atypical_globules"] else None)
    chosen = {name: u[i] < odds[name] for i, name in
              enumerate(("negative_network", "regression", "veil", "milia", "streaks"), start=3)}
    painters = {name: np.random.default_rng(rng.integers(2 ** 63)) for name in
                ("pigment_network", "negative_network", "regression", "veil", "dots_globules", "milia", "streaks")}

    depth, centre, radius = _lesion_geometry(mask)
    image = np.array(image, np.float32)
    masks, levels = {}, {}
    if network:
        levels["pigment_network"] = "atypical" if network_atypical else "typical"
        image, masks["pigment_network"] = pigment_network(painters["pigment_network"], image, mask, depth, scale,
                                                          network_atypical)
    if chosen["negative_network"]:
        image, masks["negative_network"] = negative_network(painters["negative_network"], image, mask, depth,
                                                            radius, scale)
    if chosen["regression"]:
        image, masks["regression_areas"] = regression(painters["regression"], image, mask, depth, radius, scale)
    if chosen["veil"]:
        image, masks["blue_whitish_veil"] = blue_whitish_veil(painters["veil"], image, mask, depth, radius, scale)
    if globules:
        levels["dots_globules"] = globules
        image, masks["dots_globules"] = dots_globules(painters["dots_globules"], image, mask, depth, scale,
                                                      globules == "atypical")
    if chosen["milia"]:
        image, masks["milia_like_cyst"] = milia_like_cysts(painters["milia"], image, mask, depth, scale)
    if chosen["streaks"]:
        image, masks["streaks"] = streaks(painters["streaks"], image, mask, centre, radius, scale)
    return image, masks, levels
