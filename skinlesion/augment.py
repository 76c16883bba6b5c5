"""Dermoscopy augmentation with albumentations: geometry, colour, and hair-like occlusion.

Dermoscopy has no up or down, so flips and 90-degree rotations are free;
dermoscopes differ in colour and brightness, so colour jitter teaches the
model lesions rather than one device's look; hairs are the commonest
occluder, so drawing thin dark curves over some images teaches it to look
through them.
"""
import albumentations as A
import cv2
import numpy as np


def draw_hairs(image, rng, count=None):
    """Draw thin dark curved 'hairs' across an image.

    image: uint8 [H, W, 3]. Returns: a new uint8 [H, W, 3].
    """
    out = image.copy()
    h, w = out.shape[:2]
    count = int(rng.integers(1, 8)) if count is None else count
    for _ in range(count):
        points = []
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        angle = rng.uniform(0, 2 * np.pi)
        step = max(h, w) / 12
        for _ in range(12):
            points.append((int(x), int(y)))
            angle += rng.normal(0, 0.25)
            x += step * np.cos(angle)
            y += step * np.sin(angle)
        colour = tuple(int(c) for c in rng.integers(10, 70, size=3))
        thickness = max(1, int(round(max(h, w) / 300 * rng.uniform(0.6, 1.6))))
        cv2.polylines(out, [np.array(points, np.int32)], False, colour, thickness, cv2.LINE_AA)
    return out


class DermoscopyAugmentation:
    """albumentations pipeline plus hair occlusion; call as aug(image=..., masks=[...]).

    Geometric transforms move image and masks together; colour and hair
    transforms touch the image only.
    """

    def __init__(self, strong=False, hair_probability=0.3, seed=None):
        scale = (0.7, 1.3) if strong else (0.85, 1.15)
        colour_p = 0.9 if strong else 0.7
        transforms = [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.Affine(scale=scale, rotate=(-30, 30), translate_percent=(-0.08, 0.08),
                     border_mode=cv2.BORDER_REFLECT_101, p=0.7),
            A.ColorJitter(brightness=0.3 if strong else 0.2, contrast=0.3 if strong else 0.2,
                          saturation=0.3 if strong else 0.2, hue=0.06 if strong else 0.03, p=colour_p),
        ]
        if strong:
            transforms += [A.RandomGamma(gamma_limit=(70, 140), p=0.3),
                           A.GaussianBlur(blur_limit=(3, 5), p=0.15),
                           A.ToGray(p=0.05)]
        self.compose = A.Compose(transforms)
        self.hair_probability = hair_probability
        self.rng = np.random.default_rng(seed)

    def __call__(self, image, masks=None, **kwargs):
        out = self.compose(image=image, masks=masks if masks is not None else [])
        if self.rng.random() < self.hair_probability:
            out["image"] = draw_hairs(out["image"], self.rng)
        return out


def dermoscopy_augmentation(strong=False, seed=None):
    """The training augmentation lesions.py uses (--augment default | strong)."""
    return DermoscopyAugmentation(strong=strong, seed=seed)
