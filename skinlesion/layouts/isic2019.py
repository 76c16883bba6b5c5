"""ISIC 2019: ISIC_2019_Training_Input/ + ISIC_2019_Training_GroundTruth.csv (one-hot) + metadata with lesion_id.

Ground truth columns image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK; an image with
UNK set has no class in any scheme (schemes.CLASSIFIER_SCHEMES) and is
skipped and counted. ISIC_2019_Training_Metadata.csv gives lesion_id (empty
for some images, which then group alone). Only the training set has public
labels, so there is no official split.
"""
import os

from skinlesion.layouts.base import Scan
from skinlesion.layouts.files import find_label_file, list_images, unique_stems, unwrap_dir
from skinlesion.layouts.labelonly import add_labelled_images, group_ids, one_hot_labels
from skinlesion.layouts.registry import Layout, register

ISIC2019_INPUT = "ISIC_2019_Training_Input"
ISIC2019_LABELS = "ISIC_2019_Training_GroundTruth.csv"
ISIC2019_METADATA = "ISIC_2019_Training_Metadata.csv"
ISIC2019_CODES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")


def scan(root, subsets=None):
    """The training images with their labels and lesion ids; no masks. subsets: ignored."""
    found = Scan("isic2019", root)
    path = find_label_file(root, ISIC2019_LABELS)
    labels = one_hot_labels(found, path, "image", ISIC2019_CODES) if path else {}
    for stem, (raw, _, row_no) in labels.items():
        if raw == "UNK":
            labels[stem] = (None, f"{ISIC2019_LABELS} row {row_no}: UNK, the challenge's unknown class, "
                                  f"is no training class", row_no)
    meta = find_label_file(root, ISIC2019_METADATA)
    groups = group_ids(found, meta, "image", "lesion_id") if meta else {}
    images = list_images(unwrap_dir(os.path.join(root, ISIC2019_INPUT)))
    add_labelled_images(found, "isic2019", dict(unique_stems(found, images)), labels, path,
                        f"{ISIC2019_INPUT}/", groups)
    return found


register(Layout(name="isic2019",
                expected=f"{ISIC2019_INPUT}/ + {ISIC2019_LABELS} (image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK) "
                         f"(+ {ISIC2019_METADATA} with lesion_id)",
                detect=lambda directory, names: ISIC2019_INPUT in names,
                scan=scan, has_masks=False, has_groups=True, group_key="lesion_id"))
