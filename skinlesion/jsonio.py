"""Strict JSON out of numpy-laden results: one sanitiser, one writer.

Results carry numpy scalars and arrays, and undefined metrics are NaN.
``json.dump`` rejects the first and writes the second as ``NaN``, which is not
JSON (browsers and most readers refuse the file). ``json_safe`` turns both into
plain Python values, NaN and infinities into ``None`` (null), so every file
written by ``write_json`` parses anywhere.
"""
import json
import math
import os

import numpy as np


def json_safe(value):
    """A copy of value that json.dump accepts without help.

    value: any nesting of dicts, lists, tuples, numpy arrays, numpy or Python
        scalars. Dict keys become str, tuples and arrays become lists, numpy
        scalars become bool / int / float, NaN and +-inf become None. Other
        objects are returned unchanged.
    Returns: the sanitised copy.
    """
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_json(path, value, indent=2):
    """Write value to path as strict JSON (json_safe first); return what was written.

    path: output file; its folder is created. indent: as json.dump's.
    Objects json_safe leaves alone (paths, ...) are written as their str().
    Returns: the sanitised value (a plain-Python copy of value).
    """
    safe = json_safe(value)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(safe, handle, indent=indent, allow_nan=False, default=str)
    return safe
