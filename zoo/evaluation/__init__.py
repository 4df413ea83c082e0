"""Measuring models: classification, verification, robustness, complexity, the seed comparison.

`job.py` is the evaluation job behind `evaluate.py`; each other module is one kind of
measurement, usable on its own.
"""

from zoo.evaluation.job import (
    check_spec,
    data_config,
    evaluate,
    evaluate_model,
    load_model,
    local_filter_figure,
    report,
)

__all__ = [
    "check_spec",
    "data_config",
    "evaluate",
    "evaluate_model",
    "load_model",
    "local_filter_figure",
    "report",
]
