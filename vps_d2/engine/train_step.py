"""Deprecated path: the training step moved to :mod:`vps_d2.solver.train_step`."""

from vps_d2.solver.train_step import *  # noqa: F403  (kept for plug-ins importing the old path)
from vps_d2.solver.train_step import __all__  # noqa: F401
