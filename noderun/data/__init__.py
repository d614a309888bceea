"""Dataset modules: each builds train and test splits and says what shape the data has."""

from .splits import DataSplits

__all__ = ["DataSplits"]
