"""One folder per method; importing this package registers each method's model and config."""

from . import diff_vps, frame_baseline, pgn_aen, sali  # noqa: F401
