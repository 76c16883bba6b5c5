"""Class schemes: which classes a model learns, and how every dataset's diagnoses map to them.

Every layout reports its raw diagnosis strings (``"mel"`` in HAM10000,
``"MEL"`` in ISIC 2018, ``"Melanoma"`` in PH2, ...). They are first
normalised to one *canonical diagnosis* vocabulary, then mapped to the class
names of the requested scheme. Class ids are 1..K in the order of
``SCHEMES[name]``; 0 is background.

A scheme is *supplied* by a dataset when every diagnosis the dataset can
produce has a class in that scheme (e.g. HAM10000 cannot supply ``ph2``: its
``nv`` does not say common or atypical).

``SCHEMES`` are the schemes of the Mask R-CNN's class head (LesionDataset,
LesionConfig, the synthetic set, which has images for each). The second-stage
classifier (skinlesion.labelled) also takes ``CLASSIFIER_SCHEMES``, the ones
the label-only datasets need: ``isic2019`` and ``melanoma``. Functions that
take a scheme name check it against SCHEMES unless told
``purpose="classification"``; ``class_names``, ``to_class`` and ``num_classes``
accept every name in ``ALL_SCHEMES``.

``ATTRIBUTE_SCHEMES`` are Mask R-CNN schemes whose classes are not
diagnoses but dermoscopic structures: ``isic2018_attributes``, the five ISIC
2018 Task 2 attributes, read from attribute masks (one instance per
connected component, skinlesion.attribute_masks). They serve segmentation
(LesionDataset, LesionConfig) and need attribute masks rather than
diagnosis labels, so ``require_scheme`` and ``supplied_schemes`` leave them
to LesionDataset, and ``to_class`` gives no per-image class for them.
"""
import logging

from skinlesion.criteria import TASK2_ATTRIBUTES

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

# Schemes for the classifier only. isic2019: the eight ISIC 2019 training
# classes. Its ninth column, UNK, is the challenge's "none of the others"
# answer for test images; no training image has it, so UNK is not a class:
# an image labelled UNK (or with no class set) has no class in any scheme
# and is skipped and counted. melanoma: melanoma against everything else, the
# negative class first (class index 1 is melanoma, as ISIC 2020's target 1).
CLASSIFIER_SCHEMES = {
    "isic2019": ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"),
    "melanoma": ("not_melanoma", "melanoma"),
}
ALL_SCHEMES = {**SCHEMES, **CLASSIFIER_SCHEMES}
# Mask R-CNN schemes of dermoscopic structures (module docstring); class order = TASK2_ATTRIBUTES.
ATTRIBUTE_SCHEMES = {
    "isic2018_attributes": TASK2_ATTRIBUTES,
}

# The canonical diagnoses every raw label is normalised to. "benign" and
# "malignant" are for sources that only give that (ISIC 2016 Part 3, ISIC
# 2024's target); "not_melanoma" for those that only say "not melanoma" (the
# ISIC 2017 copy with a melanoma column only, ISIC 2020's target 0).
DIAGNOSES = (
    "melanoma", "nevus", "common_nevus", "atypical_nevus", "seborrheic_keratosis",
    "bcc", "akiec", "bkl", "df", "vasc", "benign", "malignant", "scc", "not_melanoma",
)

MALIGNANT = frozenset({"melanoma", "bcc", "akiec", "malignant", "scc"})

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
    # "not_melanoma" does not say benign or malignant.
    "binary": {d: ("malignant" if d in MALIGNANT else "benign") for d in DIAGNOSES if d != "not_melanoma"},
    "ph2": {
        "common_nevus": "common_nevus", "atypical_nevus": "atypical_nevus", "melanoma": "melanoma",
    },
    "isic2019": {
        "melanoma": "MEL",
        "nevus": "NV", "common_nevus": "NV", "atypical_nevus": "NV",
        # ISIC 2019 took HAM10000's akiec images into AK and has SCC apart.
        "seborrheic_keratosis": "BKL", "bkl": "BKL",
        "bcc": "BCC", "akiec": "AK", "df": "DF", "vasc": "VASC", "scc": "SCC",
    },
    # "malignant" alone does not say whether it is a melanoma.
    "melanoma": {d: ("melanoma" if d == "melanoma" else "not_melanoma") for d in DIAGNOSES if d != "malignant"},
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
    # One-hot columns of ISIC_2019_Training_GroundTruth.csv (UNK: see CLASSIFIER_SCHEMES).
    "isic2019": {"MEL": "melanoma", "NV": "nevus", "BCC": "bcc", "AK": "akiec", "BKL": "bkl",
                 "DF": "df", "VASC": "vasc", "SCC": "scc"},
    # ISIC-2017_Training_Classes.csv (melanoma 1.0 / 0.0); the reader turns it into these words.
    "isic2017_classes": {"melanoma": "melanoma", "not_melanoma": "not_melanoma"},
    # The target column: ISIC 2020 train.csv (1 = melanoma), ISIC 2024 train-metadata.csv (1 = malignant).
    "isic2020": {"1": "melanoma", "0": "not_melanoma"},
    "isic2024": {"1": "malignant", "0": "benign"},
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
    "ak": "akiec", "squamous_cell_carcinoma": "scc", "non_melanoma": "not_melanoma",
})

# Diagnoses each official layout's label files can produce (fixed by the
# challenge definitions, not by which rows a user happens to have).
LAYOUT_VOCABULARY = {layout: frozenset(table.values()) for layout, table in RAW_DIAGNOSIS.items()}


def _known(purpose):
    """The schemes serving ``purpose`` ("segmentation": SCHEMES + ATTRIBUTE_SCHEMES, "classification": ALL_SCHEMES)."""
    if purpose not in ("segmentation", "classification"):
        raise ValueError(f"purpose={purpose!r}: choose segmentation or classification")
    return {**SCHEMES, **ATTRIBUTE_SCHEMES} if purpose == "segmentation" else ALL_SCHEMES


def is_attribute_scheme(scheme):
    """True for a scheme of dermoscopic structures read from attribute masks (ATTRIBUTE_SCHEMES)."""
    return scheme in ATTRIBUTE_SCHEMES


def check_scheme_name(scheme, purpose="segmentation"):
    """Return ``scheme`` if it is a known scheme name for ``purpose``, else raise SchemeError listing them."""
    known = _known(purpose)
    if scheme not in known:
        extra = ""
        if scheme in ATTRIBUTE_SCHEMES:
            extra = " (that scheme is for the Mask R-CNN's attribute masks, LesionDataset)"
        elif scheme in ALL_SCHEMES:
            extra = " (that scheme is for the classifier, skinlesion.labelled)"
        raise SchemeError(f"classes={scheme!r}: unknown class scheme{extra}; choose one of "
                          f"{', '.join(known)}")
    return scheme


def class_names(scheme):
    """The class names of ``scheme`` in id order (background excluded); any name in ALL_SCHEMES or ATTRIBUTE_SCHEMES."""
    if scheme in ATTRIBUTE_SCHEMES:
        return ATTRIBUTE_SCHEMES[scheme]
    return ALL_SCHEMES[check_scheme_name(scheme, "classification")]


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
    """Class name of a canonical ``diagnosis`` in ``scheme`` (any in ALL_SCHEMES), or None when it has none.

    An attribute scheme (ATTRIBUTE_SCHEMES) has no class per image: None.
    """
    if scheme in ATTRIBUTE_SCHEMES:
        return None
    check_scheme_name(scheme, "classification")
    if scheme == "lesion":
        return "lesion"
    if diagnosis is None:
        return None
    return SCHEME_MAPS[scheme].get(diagnosis)


def supplied_schemes(vocabulary, purpose="segmentation"):
    """Schemes serving ``purpose`` in which every diagnosis of ``vocabulary`` has a class.

    "lesion" (one class) is always among them for segmentation, never for classification.
    """
    vocabulary = set(vocabulary or ())
    found = ["lesion"] if purpose == "segmentation" else []
    if not vocabulary:
        return found
    for scheme in _known(purpose):
        if scheme != "lesion" and scheme in SCHEME_MAPS and all(SCHEME_MAPS[scheme].get(d) for d in vocabulary):
            found.append(scheme)
    return found


def require_scheme(scheme, vocabulary, where, observed=None, purpose="segmentation"):
    """Raise SchemeError unless the diagnoses in ``vocabulary`` can supply ``scheme``.

    ``where`` names the dataset (layout and path) for the message; ``observed``
    optionally lists the raw labels actually present, to show the user what
    the dataset does have; ``purpose`` says which schemes may be named.
    """
    check_scheme_name(scheme, purpose)
    if scheme == "lesion" or scheme in ATTRIBUTE_SCHEMES:
        return
    vocabulary = set(vocabulary or ())
    if not vocabulary:
        if purpose == "classification":
            raise SchemeError(f"classes={scheme!r} needs diagnosis labels, but {where} has no labels; "
                              f"add the dataset's label file")
        raise SchemeError(
            f"classes={scheme!r} needs diagnosis labels, but {where} has no labels; "
            f"it supplies only classes='lesion' (add the dataset's label file, or use classes='lesion')")
    missing = sorted(d for d in vocabulary if not SCHEME_MAPS[scheme].get(d))
    if missing:
        have = ", ".join(sorted(observed)) if observed else ", ".join(sorted(vocabulary))
        raise SchemeError(
            f"classes={scheme!r} ({', '.join(ALL_SCHEMES[scheme])}) cannot be built from {where}: "
            f"its diagnoses {', '.join(missing)} have no class in that scheme. The dataset has "
            f"labels: {have}; it can supply classes= "
            + (" or ".join(repr(n) for n in supplied_schemes(vocabulary, purpose)) or "(none)"))
