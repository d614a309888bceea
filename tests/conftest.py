import pytest
import torch
from hydra import compose, initialize_config_module

import noderun.conf  # noqa: F401  the config schemas


def compose_config(*overrides):
    """The config `noderun train *overrides` runs with, composed by Hydra's compose API (`from conftest import
    compose_config`)."""
    with initialize_config_module(config_module="noderun.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
