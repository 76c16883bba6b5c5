"""A plain folder without masks: images/ + labels.csv (image,label[,lesion_id]).

Detected only where there is no masks/ folder (with it the folder is the
``folder`` layout, which reads the same labels.csv).
"""
from skinlesion.layouts.folder import detect_folder, scan_folder
from skinlesion.layouts.registry import Layout, register


def detect(directory, names):
    """images/ and labels.csv, no masks/."""
    return detect_folder(directory, names) and "labels.csv" in names and "masks" not in names


def scan(root, subsets=None):
    """The images with their labels.csv labels and lesion ids; no masks. subsets: ignored."""
    found = scan_folder(root, subsets, with_masks=False)
    found.layout = "folder_labels"
    return found


register(Layout(name="folder_labels", expected="images/ + labels.csv (image,label[,lesion_id]), no masks/",
                detect=detect, scan=scan, has_masks=False, has_groups=True, group_key="lesion_id"))
