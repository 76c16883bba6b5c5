"""Synthetic dermoscopy, the criteria read back from what was drawn.

``lesion_criteria`` turns one synthetic lesion (its clean image before
artefacts, its mask and the structures skinlesion.synthetic_structures drew)
into a typed criteria dict of skinlesion.criteria. Two criteria are read
from the result rather than chosen:

- colours: each interior lesion pixel of the clean image (no hairs, bubbles,
  vignette or noise) is given the nearest of COLOUR_REFERENCES in CIELAB; a
  colour is present when its pixels cover at least COLOUR_MIN_FRACTION of
  the interior. Pixels nearest to UNCOUNTED_REFERENCES (pink, as in BCC and
  vascular lesions) count for no colour. The most common colour is always
  kept, so the set is never empty.
- asymmetry: the mask is mirrored over each of its two principal axes (the
  lines through its centroid along the eigenvectors of its second moments);
  an axis is asymmetric when the part of the mask the mirror image does not
  cover exceeds ASYMMETRY_THRESHOLD of the mask's area. Asymmetry is the
  number of asymmetric axes (0, 1, 2). Shape only: PH2 graders also weigh
  colours and structures, which this rule leaves out.
"""
import cv2
import numpy as np

from skinlesion import criteria as criteria_module

# Reference colours (RGB) of the six criteria colours, one or more each,
# chosen from what the generator paints (paint_lesion, the structures); the
# dark red and purple of vascular lacunae count as red.
COLOUR_REFERENCES = {"white": ((222, 216, 214),), "red": ((180, 55, 58), (125, 24, 42), (112, 36, 82)),
                     "light_brown": ((170, 112, 72),), "dark_brown": ((96, 58, 38),),
                     "blue_gray": ((108, 120, 148),), "black": ((38, 30, 30),)}
UNCOUNTED_REFERENCES = {"pink": ((218, 148, 150),)}
COLOUR_MIN_FRACTION = 0.02
ASYMMETRY_THRESHOLD = 0.08
# Structure mask names of draw_structures -> ISIC 2018 Task 2 attribute names.
TASK2_SOURCES = {"globules": "dots_globules", "milia_like_cyst": "milia_like_cyst",
                 "negative_network": "negative_network", "pigment_network": "pigment_network",
                 "streaks": "streaks"}


def _lab(rgb):
    """CIELAB float32 [..., 3] of RGB values [..., 3] on the 0-255 scale."""
    rgb = np.clip(np.asarray(rgb, np.float32), 0, 255) / 255.0
    return cv2.cvtColor(rgb.reshape(-1, 1, 3), cv2.COLOR_RGB2Lab).reshape(rgb.shape)


def colour_shares(clean, mask, scale):
    """{colour: fraction of the lesion's interior pixels nearest to it} over COLOUR_REFERENCES.

    clean: float or uint8 [H, W, 3], the lesion before artefacts; mask: bool
    [H, W]; scale: pixel size relative to 256 px (sets how far in from the
    soft border the interior starts).
    """
    erode = max(1, int(round(2 * scale)))
    interior = cv2.erode(mask.astype(np.uint8), np.ones((2 * erode + 1, 2 * erode + 1), np.uint8)).astype(bool)
    if interior.sum() < 10:
        interior = mask
    named = [(name, rgb) for table in (COLOUR_REFERENCES, UNCOUNTED_REFERENCES)
             for name, options in table.items() for rgb in options]
    references = _lab(np.array([rgb for _, rgb in named], np.float32))
    pixels = _lab(np.asarray(clean, np.float32)[interior])
    nearest = np.argmin(((pixels[:, None, :] - references[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=len(named)) / max(len(nearest), 1)
    shares = dict.fromkeys(COLOUR_REFERENCES, 0.0)
    for (name, _), share in zip(named, counts):
        if name in shares:
            shares[name] += float(share)
    return shares


def lesion_colours(clean, mask, scale):
    """frozenset of criteria colours present in the lesion (the rule in the module docstring)."""
    shares = colour_shares(clean, mask, scale)
    present = {name for name, share in shares.items() if share >= COLOUR_MIN_FRACTION}
    return frozenset(present or {max(shares, key=shares.get)})


def mirror_mismatch(mask):
    """(major, minor): fraction of ``mask`` [H, W] bool left uncovered when mirrored over each principal axis."""
    moments = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    area = moments["m00"]
    if area == 0:
        return 0.0, 0.0
    cx, cy = moments["m10"] / area, moments["m01"] / area
    angle = 0.5 * np.arctan2(2 * moments["mu11"], moments["mu20"] - moments["mu02"])
    height, width = mask.shape
    source = mask.astype(np.float32)
    result = []
    for theta in (angle, angle + np.pi / 2):
        u = np.array([np.cos(theta), np.sin(theta)])
        reflect = 2 * np.outer(u, u) - np.eye(2)   # mirror over the line through the centroid along u
        centre = np.array([cx, cy])
        matrix = np.hstack([reflect, (centre - reflect @ centre)[:, None]]).astype(np.float32)
        mirrored = cv2.warpAffine(source, matrix, (width, height), flags=cv2.INTER_LINEAR) > 0.5
        result.append(float((mask & ~mirrored).sum() / area))
    return tuple(result)


def lesion_asymmetry(mask):
    """0, 1 or 2: how many principal axes ``mask`` bool [H, W] is asymmetric about."""
    return int(sum(m > ASYMMETRY_THRESHOLD for m in mirror_mismatch(mask)))


def lesion_criteria(clean, mask, scale, structure_masks=None, levels=None):
    """Typed criteria dict (criteria.validate passes) for one synthetic lesion.

    clean: [H, W, 3] the lesion before artefacts; mask: bool [H, W];
    structure_masks / levels: what draw_structures returned, or None when no
    structures were drawn (then only asymmetry and colours are known: the
    base painting has network-like texture and dots that are not labelled).
    A structure counts as present only if its mask is non-empty.
    pigment_network is left unknown where no network is drawn (PH2 grades it
    typical / atypical only); task2_pigment_network False says it is absent.
    """
    found = {"asymmetry": lesion_asymmetry(mask), "colours": lesion_colours(clean, mask, scale)}
    if structure_masks is not None:
        present = {name for name, region in structure_masks.items() if region.any()}
        levels = levels or {}
        found["pigment_network"] = levels["pigment_network"] if "pigment_network" in present else None
        found["dots_globules"] = levels["dots_globules"] if "dots_globules" in present else "absent"
        found["streaks"] = "streaks" in present
        found["regression_areas"] = "regression_areas" in present
        found["blue_whitish_veil"] = "blue_whitish_veil" in present
        for attribute, source in TASK2_SOURCES.items():
            found[f"task2_{attribute}"] = source in present
    return criteria_module.validate(found)


def task2_masks(structure_masks, shape):
    """{ISIC 2018 Task 2 attribute: bool [H, W]} for all five attributes (empty where absent)."""
    empty = np.zeros(shape, bool)
    return {attribute: structure_masks.get(source, empty).copy()
            for attribute, source in TASK2_SOURCES.items()}


def criteria_cell(name, value):
    """The labels.csv text of criterion ``name``'s typed value, in words criteria.parse_value reads.

    None -> "" (unknown); ordinal -> "0" / "1" / "2"; categorical -> its
    level; binary -> "present" / "absent"; colours -> names joined by ";"
    in criteria.COLOURS order.
    """
    if value is None:
        return ""
    spec = criteria_module.criterion(name)
    if spec.kind == "binary":
        return "present" if value else "absent"
    if spec.kind == "set":
        return ";".join(level for level in spec.levels if level in value)
    return str(value)
