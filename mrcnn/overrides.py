"""Config overrides from text: the CLI's ``--config KEY=VALUE`` pairs, typed like the field defaults.

Config.parse_overrides and Config.from_overrides delegate here. Values are
read as Python literals, never run as code.
"""
import ast

import numpy as np

from .config import ConfigError, nearest_fields_hint


def parse_overrides(config_class, pairs, reserved=None):
    """``KEY=VALUE`` strings (the CLI's ``--config``) -> {KEY: value}, typed like config_class's defaults.

    Values are read as Python literals and never evaluated as code
    (ast.literal_eval; a bare word stays a string), then checked against
    the type of the field's default (an int field takes 3, not 3.5; a
    float field takes 3 as 3.0; an array field a list of as many numbers).
    reserved: {FIELD: how to set it instead} for fields this way must not
    set (ConfigError with that hint).
    Raises ConfigError naming the field and the nearest field names.
    """
    fields = config_class.field_names()
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--config {pair!r}: expected KEY=VALUE, e.g. --config IMAGE_MAX_DIM=512")
        key, raw = pair.split("=", 1)
        key = key.strip().upper()
        if key not in fields:
            raise ConfigError(f"--config {key}: unknown Config field{nearest_fields_hint(key, fields)}")
        if reserved and key in reserved:
            raise ConfigError(f"--config {key}: {reserved[key]}")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        overrides[key] = coerce(key, value, getattr(config_class, key))
    return overrides


def coerce(key, value, default):
    """A --config value checked against the field's default type; converted where lossless.

    Raises ConfigError naming the field and the type it expects.
    """
    def wrong(expected):
        return ConfigError(f"--config {key}={value!r}: expected {expected}")

    if default is None or callable(default):
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise wrong("True or False")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise wrong("an integer")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise wrong("a number")
    if isinstance(default, str):
        return str(value)
    if isinstance(default, np.ndarray):
        if isinstance(value, (list, tuple)) and len(value) == default.size:
            return np.array(value, dtype=default.dtype if default.dtype.kind == "f" else float)
        raise wrong(f"a list of {default.size} numbers")
    if isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return type(default)(value)
        raise wrong(f"a list such as {list(default)!r}")
    if isinstance(default, dict):
        if isinstance(value, dict):
            return value
        raise wrong(f"a dict such as {default!r}")
    return value
