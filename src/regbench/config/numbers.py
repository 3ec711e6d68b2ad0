"""The one rule for a number in a config or a constructor argument: an int or a float (a bool is
not one), finite."""

import math
from typing import Any


def finite_number(value: Any) -> bool:
    """True for an int or float that is finite (not a bool, not NaN, not ±inf)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
