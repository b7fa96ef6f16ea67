"""Losses of Real-ESRGAN fine-tuning: pixel (L1/MSE), VGG19 perceptual, and vanilla GAN."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from esrgan.errors import WeightsError
from esrgan.lazy_imports import lazy_import
from esrgan.quality.evaluate import VGG19_FILE, VGGDistance

# Real-ESRGAN's perceptual layers (conv outputs, before their ReLU): index in vgg19.features, weight.
VGG_LAYERS = {"conv1_2": (2, 0.1), "conv2_2": (7, 0.1), "conv3_4": (16, 1.0), "conv4_4": (25, 1.0),
              "conv5_4": (34, 1.0)}


class PerceptualLoss(nn.Module):
    """Weighted L1 between VGG19 features (pre-activation) of result and ground truth.

    The ImageNet weights are read from a local file (torchvision's cache, or ``weights``); they
    cannot be downloaded here, and a random VGG would measure nothing, so without them this raises.
    """

    def __init__(self, weights: Path | None = None) -> None:
        super().__init__()
        found = VGGDistance.find(weights)
        if found is None:
            raise WeightsError(
                f"the perceptual loss needs VGG19 ImageNet weights ({VGG19_FILE}) in torch's cache "
                f"({torch.hub.get_dir()}/checkpoints) or given with --vgg-weights; they cannot be "
                "downloaded here. Add them, or train without it: --no-perceptual"
            )
        net = lazy_import("torchvision.models").vgg19()
        net.load_state_dict(torch.load(found, map_location="cpu", weights_only=True))
        last = max(index for index, _ in VGG_LAYERS.values())
        self.features = net.features[: last + 1].eval().requires_grad_(False)
        for layer in self.features:  # an in-place ReLU would overwrite the conv outputs we keep
            if isinstance(layer, nn.ReLU):
                layer.inplace = False
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def _features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        wanted = {index for index, _ in VGG_LAYERS.values()}
        out, h = {}, (x - self.mean) / self.std
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in wanted:
                out[index] = h
        return out

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        a, b = self._features(sr), self._features(hr.detach())
        return sum(weight * F.l1_loss(a[index], b[index]) for index, weight in VGG_LAYERS.values())


def pixel_loss(kind: str):
    return F.l1_loss if kind == "l1" else F.mse_loss


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Vanilla GAN loss on per-pixel logits."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)
