"""Dermoscopic criteria (structures) as typed data, their head targets, and the 7-point readout.

A lesion's criteria are a dict ``{name: value}`` over the names in
``CRITERIA``; a name that is absent (or None) is unknown for that image and
is masked out of any loss. Values are typed by the criterion's kind:

    ordinal      int, one of ``levels``            asymmetry: 0, 1 or 2 axes asymmetric
    categorical  str, one of ``levels``            pigment_network: "typical" / "atypical"
    binary       bool (present)                    streaks: True
    set          frozenset of ``levels``           colours: {"light_brown", "dark_brown"}

PH2 (``PH2_dataset.xlsx`` columns F-Q) gives asymmetry, pigment network,
dots/globules, streaks, regression areas, blue-whitish veil and colours;
ISIC 2018 Task 2 gives the presence of five attributes (``task2_*``, a
non-empty attribute mask). ``parse_value`` reads both sheets' codes and the
words a hand-written ``labels.csv`` would use.

A model predicts *outputs*: one per ordinal / categorical / binary criterion
and one binary output per colour (``colour_<name>``). ``head_outputs`` lists
them, ``targets`` encodes a criteria dict for them (-1 where unknown),
``seven_point`` turns predicted probabilities (or known values) into the
7-point checklist readout.
"""
from dataclasses import dataclass

import numpy as np


class CriteriaError(ValueError):
    """A criterion name or value that cannot be used (names the criterion and what to do)."""


@dataclass(frozen=True)
class Criterion:
    """One dermoscopic criterion: its name, kind, levels and a title for reports."""
    name: str
    kind: str       # "ordinal", "categorical", "binary" or "set"
    levels: tuple   # ordinal / categorical values, set members; () for binary
    title: str


COLOURS = ("white", "red", "light_brown", "dark_brown", "blue_gray", "black")
TASK2_ATTRIBUTES = ("globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks")

CRITERIA = {c.name: c for c in (
    Criterion("asymmetry", "ordinal", (0, 1, 2), "Asymmetry (axes)"),
    Criterion("pigment_network", "categorical", ("typical", "atypical"), "Pigment network"),
    Criterion("dots_globules", "categorical", ("absent", "typical", "atypical"), "Dots / globules"),
    Criterion("streaks", "binary", (), "Streaks"),
    Criterion("regression_areas", "binary", (), "Regression areas"),
    Criterion("blue_whitish_veil", "binary", (), "Blue-whitish veil"),
    Criterion("colours", "set", COLOURS, "Colours"),
    *(Criterion(f"task2_{name}", "binary", (), f"{name.replace('_', ' ').capitalize()} (ISIC 2018 Task 2)")
      for name in TASK2_ATTRIBUTES),
)}
PH2_CRITERIA = ("asymmetry", "pigment_network", "dots_globules", "streaks", "regression_areas",
                "blue_whitish_veil", "colours")
TASK2_CRITERIA = tuple(f"task2_{name}" for name in TASK2_ATTRIBUTES)

# The codes of PH2's legend and the words a person writes in labels.csv.
_CATEGORY_WORDS = {"t": "typical", "typical": "typical", "at": "atypical", "atypical": "atypical",
                   "a": "absent", "absent": "absent"}
_TRUE = {"p", "present", "x", "yes", "y", "true", "1"}
_FALSE = {"a", "absent", "no", "n", "false", "0"}


def criterion(name):
    """The Criterion called ``name``; CriteriaError naming the known ones otherwise."""
    try:
        return CRITERIA[name]
    except KeyError:
        raise CriteriaError(f"unknown criterion {name!r}; known: {', '.join(CRITERIA)}") from None


def _words(cell):
    """Cell text lower-cased with whitespace collapsed; "" for None / empty."""
    return " ".join(str(cell).split()).lower() if cell is not None else ""


def parse_value(name, cell):
    """The typed value of criterion ``name`` from one sheet cell, or None when the cell is empty.

    Accepts PH2's codes (0/1/2; T, AT, A; A, P), words (typical, atypical,
    absent, present, yes, no, true, false) and, for colours, names joined by
    ";" "," or "|" (``light_brown;dark_brown``, spaces or hyphens allowed).
    Raises CriteriaError naming the criterion and the accepted values.
    """
    spec = criterion(name)
    text = _words(cell)
    if text in ("", "nan", "none", "na", "n/a", "?"):
        return None
    if spec.kind == "ordinal":
        try:
            number = float(text)
        except ValueError:
            number = None
        if number is None or not number.is_integer() or int(number) not in spec.levels:
            raise CriteriaError(f"{name}: {cell!r} is not one of {list(spec.levels)}")
        return int(number)
    if spec.kind == "categorical":
        value = _CATEGORY_WORDS.get(text)
        if value not in spec.levels:
            raise CriteriaError(f"{name}: {cell!r} is not one of {list(spec.levels)} "
                                f"(PH2 codes {'T, AT' if 'absent' not in spec.levels else 'A, T, AT'})")
        return value
    if spec.kind == "binary":
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise CriteriaError(f"{name}: {cell!r} is not present/absent (P/A, yes/no, 1/0)")
    parts = [p.strip().replace(" ", "_").replace("-", "_") for p in text.replace("|", ";").replace(",", ";").split(";")]
    parts = [p.replace("grey", "gray") for p in parts if p]
    unknown = [p for p in parts if p not in spec.levels]
    if unknown:
        raise CriteriaError(f"{name}: {unknown} not among {list(spec.levels)}")
    return frozenset(parts)


def validate(criteria):
    """``criteria`` with None entries dropped, every value checked against its criterion.

    Raises CriteriaError naming the criterion whose value is of the wrong type.
    """
    clean = {}
    for name, value in (criteria or {}).items():
        if value is None:
            continue
        spec = criterion(name)
        ok = {"ordinal": lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v in spec.levels,
              "categorical": lambda v: v in spec.levels,
              "binary": lambda v: isinstance(v, (bool, np.bool_)),
              "set": lambda v: isinstance(v, (set, frozenset)) and set(v) <= set(spec.levels)}[spec.kind]
        if not ok(value):
            raise CriteriaError(f"{name}: {value!r} does not fit a {spec.kind} criterion with levels {spec.levels}")
        clean[name] = frozenset(value) if spec.kind == "set" else value
    return clean


# -------------------------------------------------------------- head outputs
@dataclass(frozen=True)
class Output:
    """One predicted output: ``units`` softmax classes (levels) or 1 sigmoid (binary)."""
    name: str
    criterion: str
    levels: tuple   # the softmax classes; (False, True) for a binary output

    @property
    def binary(self):
        """True for a one-unit sigmoid output."""
        return self.levels == (False, True)

    @property
    def units(self):
        """Width of the output layer: 1 for binary, else the number of levels."""
        return 1 if self.binary else len(self.levels)


def head_outputs(names):
    """The outputs a model predicts for criteria ``names``: colours expand to one binary per colour."""
    outputs = []
    for name in names:
        spec = criterion(name)
        if spec.kind == "set":
            outputs += [Output(f"colour_{c}" if name == "colours" else f"{name}_{c}", name, (False, True))
                        for c in spec.levels]
        elif spec.kind == "binary":
            outputs.append(Output(name, name, (False, True)))
        else:
            outputs.append(Output(name, name, spec.levels))
    return outputs


def targets(criteria, outputs):
    """int32 [len(outputs)]: the class index of each output (0/1 for binary), -1 where unknown."""
    criteria = criteria or {}
    row = np.full(len(outputs), -1, np.int32)
    for i, out in enumerate(outputs):
        value = criteria.get(out.criterion)
        if value is None:
            continue
        spec = CRITERIA[out.criterion]
        if spec.kind == "set":
            row[i] = int(out.name.split("_", 1)[1] in value)
        elif out.binary:
            row[i] = int(bool(value))
        else:
            row[i] = out.levels.index(value)
    return row


def present_probability(output, probs):
    """P(the criterion is present / abnormal) from one output's probabilities.

    probs: float [units] (binary: [1] sigmoid) or [N, units]. Ordinal
    asymmetry: P(asymmetric in at least one axis); categorical: P(the last
    level, "atypical"). Returns float or float [N].
    """
    probs = np.asarray(probs, np.float64)
    if output.binary:
        return probs[..., 0]
    if output.criterion == "asymmetry":
        return 1.0 - probs[..., 0]
    return probs[..., output.levels.index("atypical")]


# ------------------------------------------------------------ 7-point readout
# Argenziano G, Fabbrocini G, Carli P, De Giorgi V, Sammarco E, Delfino M.
# "Epiluminescence microscopy for the diagnosis of doubtful melanocytic skin
# lesions: comparison of the ABCD rule of dermatoscopy and a new 7-point
# checklist based on pattern analysis." Arch Dermatol 1998;134(12):1563-70.
# Major criteria score 2 (atypical pigment network, blue-whitish veil,
# atypical vascular pattern), minor 1 (irregular streaks, irregular
# dots/globules, irregular blotches, regression structures); a total of 3 or
# more suggests melanoma. PH2 records no vascular pattern and no blotches,
# and streaks / dots without their regularity, so the readout below counts
# five of the seven items (at most 7 points) and takes PH2's "streaks
# present" and "atypical dots/globules" for the irregular ones.
SEVEN_POINT = (("pigment_network", "atypical", 2, "atypical pigment network"),
               ("blue_whitish_veil", True, 2, "blue-whitish veil"),
               ("streaks", True, 1, "streaks (irregular in the checklist)"),
               ("dots_globules", "atypical", 1, "atypical dots/globules"),
               ("regression_areas", True, 1, "regression structures"))
SEVEN_POINT_THRESHOLD = 3
SEVEN_POINT_NOT_COUNTED = ("atypical vascular pattern (2)", "irregular blotches (1)")


def seven_point(probabilities=None, criteria=None):
    """The 7-point checklist readout from predicted probabilities or from known criteria.

    probabilities: {criterion name: P(the checklist's abnormal value)} (for
    example from ``present_probability``); the score is then the expected
    number of points. criteria: a typed criteria dict (ground truth); the
    score is the points it earns. Items missing from both count 0 and are
    listed in "unknown". Returns {"score": float, "max": 7, "threshold": 3,
    "suspicious": bool, "items": {item: points}, "unknown": [names]}.
    """
    if (probabilities is None) == (criteria is None):
        raise CriteriaError("seven_point: pass exactly one of probabilities= or criteria=")
    items, unknown = {}, []
    for name, abnormal, points, label in SEVEN_POINT:
        if probabilities is not None:
            p = probabilities.get(name)
            value = None if p is None else float(p)
        else:
            known = criteria.get(name)
            value = None if known is None else float(known == abnormal)
        if value is None:
            unknown.append(name)
            value = 0.0
        items[label] = points * value
    score = float(sum(items.values()))
    return {"score": score, "max": sum(p for _, _, p, _ in SEVEN_POINT), "threshold": SEVEN_POINT_THRESHOLD,
            "suspicious": score >= SEVEN_POINT_THRESHOLD, "items": items, "unknown": unknown,
            "not_counted": list(SEVEN_POINT_NOT_COUNTED)}
