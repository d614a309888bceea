"""Tasks: what a run optimises and measures; ``Task`` states what each provides."""

from .base import Task

__all__ = ["Task"]
