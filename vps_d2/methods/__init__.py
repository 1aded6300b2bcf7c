"""One folder per method; importing this package registers each method's model and config."""

from . import baseline, diff_vps, pgn_aen, sali  # noqa: F401
