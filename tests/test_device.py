"""Device choice: auto picks what exists; asking for a device that is not there is a clear error."""

import pytest
import torch

from noderun.train.device import resolve_device


def test_auto_picks_an_available_device():
    device = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert device.type == expected


def test_cpu_is_always_there():
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name, message", [("cuda:99", "CUDA device"), ("tpu", "unknown device")])
def test_missing_or_unknown_device(name, message):
    with pytest.raises(ValueError, match=message):
        resolve_device(name)
