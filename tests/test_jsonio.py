"""skinlesion.jsonio: numpy and NaN made strict JSON."""
import json

import numpy as np

from skinlesion import jsonio


def test_json_safe_turns_numpy_and_nan_into_json():
    value = jsonio.json_safe({"a": np.float32(np.nan), "b": np.arange(2), 3: (np.bool_(True), float("inf"))})
    assert value == {"a": None, "b": [0, 1], "3": [True, None]}
    json.dumps(value, allow_nan=False)


def test_write_json_writes_strict_json_and_returns_it(tmp_path):
    path = tmp_path / "out" / "summary.json"
    written = jsonio.write_json(str(path), {"n": np.int64(3), "x": np.float64(np.nan), "p": tmp_path}, indent=1)
    assert written == {"n": 3, "x": None, "p": tmp_path}

    def no_nan(value):
        raise AssertionError(f"file holds {value}")
    assert json.loads(path.read_text(), parse_constant=no_nan) == {"n": 3, "x": None, "p": str(tmp_path)}
