"""Hooks into Hydra's launch of `noderun train`."""
from __future__ import annotations

from hydra.experimental.callback import Callback


class LaunchStarted(Callback):
    """A Hydra callback (conf/config.yaml) that notes when the config composed and runs began, so that
    Hydra's exit status 1 can be told apart: before, a config error (2); after, a failed launch (1)."""

    started = False

    def on_run_start(self, config, **kwargs) -> None:
        LaunchStarted.started = True

    def on_multirun_start(self, config, **kwargs) -> None:
        LaunchStarted.started = True
