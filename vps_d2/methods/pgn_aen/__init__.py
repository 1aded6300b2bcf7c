"""PGN+AEN ("EUVPS", AAAI 2024): a proposal-generative network (CFFM) + an appearance-embedding
network (cross-scale region linking + cross-wise scale alignment), clip-based VPS."""

from . import config, export  # noqa: F401
from .model import PGNAEN
from .pgn import PGN_REGISTRY, build_pgn

__all__ = ["PGNAEN", "PGN_REGISTRY", "build_pgn"]
