"""HAM10000 without its lesion masks: HAM10000_images_part_{1,2}/ + HAM10000_metadata.csv (lesion_id, dx).

Detected only where HAM10000_segmentations_lesion_tschandl/ is absent (with
the masks the folder is the ``ham10000`` layout, which carries the same labels).
"""
from skinlesion.layouts.ham10000 import HAM_IMAGE_DIRS, HAM_MASK_DIR, HAM_METADATA, scan_ham10000
from skinlesion.layouts.registry import Layout, register


def scan(root, subsets=None):
    """The images with their metadata dx and lesion_id; no masks. subsets: ignored."""
    found = scan_ham10000(root, subsets, with_masks=False)
    found.layout = "ham10000_labels"
    return found


register(Layout(name="ham10000_labels",
                expected=f"{HAM_IMAGE_DIRS[0]}/, {HAM_IMAGE_DIRS[1]}/ + {HAM_METADATA} (lesion_id,image_id,dx)",
                detect=lambda directory, names: (any(d in names for d in HAM_IMAGE_DIRS)
                                                 and HAM_MASK_DIR not in names),
                scan=scan, has_masks=False, has_groups=True, group_key="lesion_id"))
