"""Class schemes: which classes a model learns, and how every dataset's diagnoses map to them.

Every layout reports its raw diagnosis strings (``"mel"`` in HAM10000,
``"MEL"`` in ISIC 2018, ``"Melanoma"`` in PH2, ...). They are first
normalised to one *canonical diagnosis* vocabulary, then mapped to the class
names of the requested scheme. Class ids are 1..K in the order of
``SCHEMES[name]``; 0 is background.

A scheme is *supplied* by a dataset when every diagnosis the dataset can
produce has a class in that scheme (e.g. HAM10000 cannot supply ``ph2``: its
``nv`` does not say common or atypical).
"""
import logging

log = logging.getLogger(__name__)


class SchemeError(ValueError):
    """A class scheme is unknown, or the dataset's labels cannot supply it."""


# Class names per scheme, in class-id order (id = position + 1).
SCHEMES = {
    "lesion": ("lesion",),
    "isic2017": ("melanoma", "seborrheic_keratosis", "nevus"),
    "isic2018": ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"),
    "binary": ("benign", "malignant"),
    "ph2": ("common_nevus", "atypical_nevus", "melanoma"),
}

# The canonical diagnoses every raw label is normalised to. "benign" and
# "malignant" are for sources that only give that (ISIC 2016 Part 3).
DIAGNOSES = (
    "melanoma", "nevus", "common_nevus", "atypical_nevus", "seborrheic_keratosis",
    "bcc", "akiec", "bkl", "df", "vasc", "benign", "malignant",
)

MALIGNANT = frozenset({"melanoma", "bcc", "akiec", "malignant"})

# canonical diagnosis -> class name, per scheme. A missing key means the
# diagnosis has no class in that scheme. "lesion" maps everything (and None).
SCHEME_MAPS = {
    "isic2017": {
        "melanoma": "melanoma",
        "nevus": "nevus", "common_nevus": "nevus", "atypical_nevus": "nevus",
        "seborrheic_keratosis": "seborrheic_keratosis",
    },
    "isic2018": {
        "melanoma": "MEL",
        "nevus": "NV", "common_nevus": "NV", "atypical_nevus": "NV",
        # HAM10000's BKL class is solar lentigo + seborrheic keratosis + LPLK.
        "seborrheic_keratosis": "BKL", "bkl": "BKL",
        "bcc": "BCC", "akiec": "AKIEC", "df": "DF", "vasc": "VASC",
    },
    "binary": {d: ("malignant" if d in MALIGNANT else "benign") for d in DIAGNOSES},
    "ph2": {
        "common_nevus": "common_nevus", "atypical_nevus": "atypical_nevus", "melanoma": "melanoma",
    },
}

# Raw label (as written in each layout's label file) -> canonical diagnosis.
RAW_DIAGNOSIS = {
    "isic2016": {"benign": "benign", "malignant": "malignant", "0": "benign", "1": "malignant"},
    # ISIC 2017 Part 3 has two 0/1 columns; the reader turns them into these words.
    "isic2017": {"melanoma": "melanoma", "seborrheic_keratosis": "seborrheic_keratosis",
                 "nevus": "nevus"},
    "isic2018": {"MEL": "melanoma", "NV": "nevus", "BCC": "bcc", "AKIEC": "akiec",
                 "BKL": "bkl", "DF": "df", "VASC": "vasc"},
    "ham10000": {"mel": "melanoma", "nv": "nevus", "bcc": "bcc", "akiec": "akiec",
                 "bkl": "bkl", "df": "df", "vasc": "vasc"},
    "ph2": {"Common Nevus": "common_nevus", "Atypical Nevus": "atypical_nevus",
            "Melanoma": "melanoma"},
}

# Free-form labels accepted in a folder layout's labels.csv (lower-cased,
# spaces and hyphens read as underscores): every canonical name, every scheme
# class name and the HAM10000 / ISIC 2018 codes.
FOLDER_ALIASES = {d: d for d in DIAGNOSES}
FOLDER_ALIASES.update({
    "mel": "melanoma", "nv": "nevus", "naevus": "nevus", "nevi": "nevus",
    "common_naevus": "common_nevus", "atypical_naevus": "atypical_nevus",
    "sk": "seborrheic_keratosis", "seborrhoeic_keratosis": "seborrheic_keratosis",
    "basal_cell_carcinoma": "bcc", "actinic_keratosis": "akiec",
    "benign_keratosis": "bkl", "dermatofibroma": "df", "vascular": "vasc",
    "vascular_lesion": "vasc", "0": "benign", "1": "malignant",
})

# Diagnoses each official layout's label files can produce (fixed by the
# challenge definitions, not by which rows a user happens to have).
LAYOUT_VOCABULARY = {layout: frozenset(table.values()) for layout, table in RAW_DIAGNOSIS.items()}


def check_scheme_name(scheme):
    """Return ``scheme`` if it is a known scheme name, else raise SchemeError listing them."""
    if scheme not in SCHEMES:
        raise SchemeError(f"classes={scheme!r}: unknown class scheme; choose one of "
                          f"{', '.join(SCHEMES)}")
    return scheme


def class_names(scheme):
    """The class names of ``scheme`` in id order (background excluded)."""
    return SCHEMES[check_scheme_name(scheme)]


def num_classes(scheme):
    """Number of classes of ``scheme`` including background (Config.NUM_CLASSES)."""
    return 1 + len(class_names(scheme))


def normalise_raw(layout, raw_label):
    """Map a layout's raw label to a canonical diagnosis, or None when unknown.

    ``layout`` is a key of RAW_DIAGNOSIS or "folder"/"synthetic" (free-form
    labels read through FOLDER_ALIASES).
    """
    if raw_label is None:
        return None
    text = str(raw_label).strip()
    if layout in RAW_DIAGNOSIS:
        table = RAW_DIAGNOSIS[layout]
        if text in table:
            return table[text]
        # Tolerate case differences and 0.0/1.0 floats written by spreadsheets.
        lowered = {k.lower(): v for k, v in table.items()}
        if text.lower() in lowered:
            return lowered[text.lower()]
        try:
            as_int = str(int(float(text)))
        except ValueError:
            return None
        return table.get(as_int)
    key = text.lower().replace(" ", "_").replace("-", "_")
    return FOLDER_ALIASES.get(key)


def to_class(diagnosis, scheme):
    """Class name of a canonical ``diagnosis`` in ``scheme``, or None when it has none."""
    check_scheme_name(scheme)
    if scheme == "lesion":
        return "lesion"
    if diagnosis is None:
        return None
    return SCHEME_MAPS[scheme].get(diagnosis)


def supplied_schemes(vocabulary):
    """Schemes in which every diagnosis of ``vocabulary`` has a class ("lesion" always)."""
    vocabulary = set(vocabulary or ())
    found = ["lesion"]
    if not vocabulary:
        return found
    for scheme in SCHEMES:
        if scheme != "lesion" and all(SCHEME_MAPS[scheme].get(d) for d in vocabulary):
            found.append(scheme)
    return found


def require_scheme(scheme, vocabulary, where, observed=None):
    """Raise SchemeError unless the diagnoses in ``vocabulary`` can supply ``scheme``.

    ``where`` names the dataset (layout and path) for the message; ``observed``
    optionally lists the raw labels actually present, to show the user what
    the dataset does have.
    """
    check_scheme_name(scheme)
    if scheme == "lesion":
        return
    vocabulary = set(vocabulary or ())
    if not vocabulary:
        raise SchemeError(
            f"classes={scheme!r} needs diagnosis labels, but {where} has no labels; "
            f"it supplies only classes='lesion' (add the dataset's label file, or use classes='lesion')")
    missing = sorted(d for d in vocabulary if not SCHEME_MAPS[scheme].get(d))
    if missing:
        have = ", ".join(sorted(observed)) if observed else ", ".join(sorted(vocabulary))
        raise SchemeError(
            f"classes={scheme!r} ({', '.join(SCHEMES[scheme])}) cannot be built from {where}: "
            f"its diagnoses {', '.join(missing)} have no class in that scheme. The dataset has "
            f"labels: {have}; it can supply classes= " + " or ".join(repr(n) for n in supplied_schemes(vocabulary)))
