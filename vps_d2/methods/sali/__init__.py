"""SALI (MICCAI 2024): short-term alignment (SAM) + long-term interaction (LIM) for online VPS."""

from . import config, convert, export, sampling  # noqa: F401
from .model import SALI

__all__ = ["SALI"]
