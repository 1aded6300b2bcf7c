"""The TRM discriminator D: a frame (B, 3, H, W), ImageNet-normalised -> one logit (B,).

* :class:`InceptionDiscriminator` (the paper): torchvision's Inception-v3 architecture
  (``aux_logits=False``; its own weight initialisation, nothing downloaded), head
  global average -> dropout 0.5 -> fc 1000 (torchvision's), then Linear(1000, 1) -> logit.
  ImageNet weights only from a local file (:func:`load_inception_weights`).
* :class:`SmallDiscriminator` (CPU runs): four stride-2 4x4 convs (BN, LeakyReLU 0.2),
  global average, Linear -> logit.

D(x) = sigmoid(logit); the losses take the logit (no second sigmoid).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import Inception3

from vps_d2.modeling.layers import ConvNormAct

__all__ = [
    "DISCRIMINATORS",
    "InceptionDiscriminator",
    "SmallDiscriminator",
    "build_discriminator",
    "load_inception_weights",
]

logger = logging.getLogger(__name__)

DISCRIMINATORS = ("inception_v3", "small")

# Inception-v3's smallest usable input (its stem and pooling stages).
_INCEPTION_MIN_SIZE = 75


def load_inception_weights(net: Inception3, path: str) -> None:
    """Load torchvision's ImageNet Inception-v3 state dict from the local file ``path``
    into ``net`` (its AuxLogits.* tensors are ignored). Every other tensor must be present
    with the right shape; errors name the file and the key."""
    where = "MODEL.DIFF_VPS.DISCRIMINATOR.WEIGHTS"
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{where}: discriminator weights file not found: {path!r}. vps_d2 never downloads "
            "weights: on a machine with internet save them once with torch.save(torchvision."
            "models.inception_v3(weights='IMAGENET1K_V1').state_dict(), 'inception_v3.pth') "
            "and point this key at the file (or leave it empty for a random initialisation)."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise RuntimeError(f"{where}: cannot read {path!r}: {e}") from e
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise RuntimeError(f"{where}: {path!r} does not hold a state dict")
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or wrong:
        raise RuntimeError(
            f"{where}: {path!r} is not a torchvision Inception-v3 state dict: "
            f"{len(missing)} tensors missing (e.g. {missing[:3]}), {len(wrong)} with another "
            f"shape (e.g. {wrong[:3]})"
        )
    unexpected = [k for k in state if k not in own]
    net.load_state_dict({k: state[k] for k in own})
    logger.info(
        "Loaded Inception-v3 discriminator weights from %s (%d extra tensors ignored)",
        path,
        len(unexpected),
    )


class InceptionDiscriminator(nn.Module):
    """forward: (B, 3, H, W) ImageNet-normalised frames -> logits (B,)."""

    def __init__(
        self,
        weights: str = "",
        input_size: Sequence[int] = (224, 224),
        transform_input: bool = True,
    ) -> None:
        super().__init__()
        self.input_size = tuple(int(s) for s in input_size) if input_size else None
        if self.input_size is not None and (
            len(self.input_size) != 2 or min(self.input_size) < _INCEPTION_MIN_SIZE
        ):
            raise ValueError(
                f"MODEL.DIFF_VPS.DISCRIMINATOR.INPUT_SIZE must be [H, W] with both "
                f">= {_INCEPTION_MIN_SIZE} for Inception-v3, got "
                f"{list(input_size)}"
            )
        self.net = Inception3(
            num_classes=1000, aux_logits=False, transform_input=transform_input, init_weights=True
        )
        if weights:
            load_inception_weights(self.net, weights)
        self.logit = nn.Linear(1000, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        elif min(x.shape[-2:]) < _INCEPTION_MIN_SIZE:
            raise ValueError(
                f"InceptionDiscriminator: frames {tuple(x.shape[-2:])} are smaller "
                f"than {_INCEPTION_MIN_SIZE} px; set MODEL.DIFF_VPS.DISCRIMINATOR."
                "INPUT_SIZE"
            )
        return self.logit(self.net(x))[:, 0]


class SmallDiscriminator(nn.Module):
    """forward: (B, 3, H, W) -> logits (B,). Four stride-2 4x4 convs (no norm on the
    first), LeakyReLU 0.2, global average, Linear."""

    def __init__(
        self, channels: Sequence[int] = (32, 64, 128, 256), input_size: Sequence[int] = ()
    ) -> None:
        super().__init__()
        chans = [3] + [int(c) for c in channels]
        self.input_size = tuple(int(s) for s in input_size) if input_size else None
        self.features = nn.Sequential(
            *[
                ConvNormAct(
                    a, b, 4, 2, 1, norm="" if i == 0 else "BN", act="leaky_relu", negative_slope=0.2
                )
                for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))
            ]
        )
        self.logit = nn.Linear(chans[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return self.logit(self.features(x).mean(dim=(2, 3)))[:, 0]


def build_discriminator(
    name: str,
    *,
    weights: str = "",
    input_size: Sequence[int] = (224, 224),
    transform_input: bool = True,
    small_channels: Sequence[int] = (32, 64, 128, 256),
) -> nn.Module:
    """MODEL.DIFF_VPS.DISCRIMINATOR.NAME -> the module."""
    if name == "inception_v3":
        return InceptionDiscriminator(
            weights=weights, input_size=input_size, transform_input=transform_input
        )
    if name == "small":
        if weights:
            raise ValueError("MODEL.DIFF_VPS.DISCRIMINATOR.WEIGHTS is for inception_v3 only")
        return SmallDiscriminator(channels=small_channels, input_size=input_size)
    raise ValueError(
        f"MODEL.DIFF_VPS.DISCRIMINATOR.NAME must be one of {DISCRIMINATORS}, got {name!r}"
    )
