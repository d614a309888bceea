"""The paper's ResNet: the ODE-Net's downsampling and head around pre-activation residual blocks."""

from __future__ import annotations

from torch import Tensor, nn

from .odenet import classifier_head, downsampling, group_norm


class PreActBlock(nn.Module):
    """``x + conv(relu(norm(conv(relu(norm(x))))))`` with bias-free 3×3 convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.residual = nn.Sequential(
            group_norm(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            group_norm(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.residual(x)


class ResNet(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, channels: int = 64, blocks: int = 6):
        super().__init__()
        self.downsampling = downsampling(input_shape[0], channels)
        self.blocks = nn.Sequential(*[PreActBlock(channels) for _ in range(blocks)])
        self.head = classifier_head(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.downsampling(x)))
