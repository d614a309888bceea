"""Numbers as people read them: each measured value rounded to what its kind means, for summary.json and
the summary table (metrics.jsonl keeps full precision). Percentages to 2 decimals, times (``*_s``) to 3
significant digits, other measurements (losses, RMSE, NLL, NFE, memory) to 4; settings as they were given."""

from __future__ import annotations

import math
from typing import Any

PERCENT_SUFFIXES = ("_error", "_accuracy")
TIME_SUFFIX = "_s"
SETTINGS = ("rtol", "atol", "step_size")  # echoed from the config, not measured


def significant(value: float, digits: int) -> float:
    """``value`` to ``digits`` significant digits (zero and non-finite values unchanged)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def rounded_value(key: str, value: Any) -> Any:
    """``value`` rounded as the metric ``key`` means; anything but a measured float unchanged."""
    if not isinstance(value, float) or key in SETTINGS:
        return value
    if key.endswith(PERCENT_SUFFIXES):
        return round(value, 2) if math.isfinite(value) else value
    return significant(value, 3 if key.endswith(TIME_SUFFIX) else 4)


def rounded(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with every measured number rounded (``rounded_value``)."""
    return {key: rounded_value(key, value) for key, value in summary.items()}
