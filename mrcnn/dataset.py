"""Dataset: the base class a user subclasses to feed images and masks (Matterport API)."""
import logging

import numpy as np

log = logging.getLogger(__name__)


def read_image_rgb(path):
    """Read an image file as RGB uint8 [H, W, 3], whatever it is on disk.

    Handles grayscale, RGBA, palette, 16-bit and EXIF-rotated files. Raises
    ValueError naming the file when it cannot be decoded.
    """
    from PIL import Image, ImageOps
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                top = arr.max() if arr.max() > 0 else 1.0
                scale = 65535.0 if top > 255 else 255.0
                arr = np.clip(arr / scale * 255.0, 0, 255).astype(np.uint8)
                return np.stack([arr] * 3, axis=-1)
            if img.mode == "F":
                arr = np.asarray(img, dtype=np.float64)
                arr = np.clip(arr, 0, 255).astype(np.uint8)
                return np.stack([arr] * 3, axis=-1)
            if img.mode in ("RGBA", "LA", "P", "PA"):
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: cannot decode image ({err})") from err


class Dataset:
    """Base class for datasets: register classes and images, then prepare().

    Subclasses add images with add_image() and override load_mask() (and
    load_image() when images do not live at ``path``).
    """

    def __init__(self, class_map=None):
        self._image_ids = []
        self.image_info = []
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids = {}

    def add_class(self, source, class_id, class_name):
        """Register a class; ids are per source, 0 is background."""
        assert "." not in source, "Source name cannot contain a dot"
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source, image_id, path, **kwargs):
        """Register an image; extra keyword arguments are kept in image_info."""
        info = {"id": image_id, "source": source, "path": path}
        info.update(kwargs)
        self.image_info.append(info)

    def image_reference(self, image_id):
        """A string that points a person to the image (path or URL)."""
        return self.image_info[image_id].get("path", "")

    def prepare(self, class_map=None):
        """Build the internal id tables; call after adding classes and images."""
        def clean_name(name):
            return ",".join(name.split(",")[:1])

        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [clean_name(c["name"]) for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)
        self.class_from_source_map = {f"{info['source']}.{info['id']}": cid
                                      for info, cid in zip(self.class_info, self.class_ids)}
        self.image_from_source_map = {f"{info['source']}.{info['id']}": iid
                                      for info, iid in zip(self.image_info, self.image_ids)}
        self.sources = sorted({i["source"] for i in self.class_info})
        self.source_class_ids = {}
        for source in self.sources:
            self.source_class_ids[source] = [
                i for i, info in enumerate(self.class_info) if i == 0 or source == info["source"]]

    def map_source_class_id(self, source_class_id):
        """'source.id' -> internal class id."""
        return self.class_from_source_map[source_class_id]

    def get_source_class_id(self, class_id, source):
        """Internal class id -> the source's own id."""
        info = self.class_info[class_id]
        assert info["source"] == source
        return info["id"]

    @property
    def image_ids(self):
        return self._image_ids

    def source_image_link(self, image_id):
        """Path or URL of the image in its source."""
        return self.image_info[image_id]["path"]

    def load_image(self, image_id):
        """The image as RGB uint8 [H, W, 3]."""
        return read_image_rgb(self.image_info[image_id]["path"])

    def load_mask(self, image_id):
        """Instance masks bool [H, W, N] and class ids int32 [N].

        The base class has no masks; override it. It returns an empty mask so
        code that only needs images keeps working.
        """
        log.warning("Dataset.load_mask is not overridden: image %s has no instances", image_id)
        return np.empty([0, 0, 0], dtype=bool), np.empty([0], np.int32)
