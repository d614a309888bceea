import pytest
import torch
from hydra import compose, initialize_config_module

import noderun.conf  # noqa: F401  the config schemas

# The latent ODE on 40 spirals (32 for training): two batches an epoch, a fraction of a second each.
SMALL_SPIRALS = [
    "experiment=spiral_latent_ode",
    "dataset.n_spirals=40",
    "train.batch_size=16",
    "train.test_batch_size=8",
    "train.progress=false",
]


def compose_config(*overrides):
    """The config `noderun train *overrides` runs with, composed by Hydra's compose API (`from conftest import
    compose_config`)."""
    with initialize_config_module(config_module="noderun.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
