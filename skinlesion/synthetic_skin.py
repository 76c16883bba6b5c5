"""Synthetic dermoscopy, the scene around the lesion: skin, texture noise and artefacts.

``skin_background`` gives the mottled skin of a random tone the lesion is
drawn onto; ``add_artefacts`` adds what real dermoscopy images carry on top:
hairs, gel bubbles, the dermoscope's circular vignette, uneven light, blur and
sensor noise. Every function draws from the ``rng`` it is given, in a fixed
order, so skinlesion.synthetic.generate stays deterministic per seed.
"""
import cv2
import numpy as np

# Skin tones from light to dark (RGB as seen under a dermoscope's light).
SKIN_TONES = np.array([[242, 205, 188], [226, 178, 150], [205, 150, 118],
                       [170, 118, 88], [128, 86, 62]], np.float32)


def smooth_noise(rng, height, width, cells, channels=1):
    """Smooth random field, float32 [H, W, channels], roughly zero mean and unit std.

    cells: grid resolution of the underlying random values (higher = finer).
    """
    cells_y = max(2, int(round(cells * height / max(height, width))))
    cells_x = max(2, int(round(cells * width / max(height, width))))
    grid = rng.standard_normal((cells_y, cells_x, channels)).astype(np.float32)
    field = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return field.reshape(height, width, channels)


def skin_background(rng, height, width):
    """Skin float32 [H, W, 3] (RGB, 0-255 scale): a tone between two neighbours of SKIN_TONES, mottled."""
    tone = rng.uniform(0, len(SKIN_TONES) - 1)
    low = int(np.floor(tone))
    skin_colour = SKIN_TONES[low] + (SKIN_TONES[min(low + 1, len(SKIN_TONES) - 1)] - SKIN_TONES[low]) * (tone - low)
    skin_colour = skin_colour + rng.uniform(-8, 8, 3) + np.array([rng.uniform(0, 10), 0, 0])
    mottling = 0.035 * smooth_noise(rng, height, width, 6, 1) + 0.015 * smooth_noise(rng, height, width, 24, 3)
    return skin_colour[None, None, :].astype(np.float32) * (1.0 + mottling)


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


def add_artefacts(rng, image, centre, scale):
    """Hairs, bubbles, vignette with uneven light, maybe blur, and noise on ``image`` float32 [H, W, 3].

    centre: (x, y) the hairs tend to cross (the lesion's centre); scale: pixel
    size relative to a 256 px image. Draws in place where it can; returns the
    image float32 [H, W, 3] (a new array when blurred), not yet clipped.
    """
    height, width = image.shape[:2]
    _draw_hairs(rng, image, centre, scale)
    _draw_bubbles(rng, image, scale)
    tilt = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(tilt) * (xx / width - 0.5) + np.sin(tilt) * (yy / height - 0.5))
    image *= (_vignette(rng, height, width) * (1.0 + rng.uniform(0, 0.15) * ramp))[..., None]
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.2) * scale)
    image += rng.normal(0, rng.uniform(1.0, 3.0), image.shape).astype(np.float32)
    return image
