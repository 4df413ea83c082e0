"""Training: compile, fit, evaluate and log — the job behind `train.py`."""

from zoo.training.job import compile_model, fit, train

__all__ = ["compile_model", "fit", "train"]
