"""Shared pytest set-up of the whole suite (tests/ and each method's tests/ folder).

tests/ goes on ``sys.path`` so every test imports the shared helpers of
``tests/train_net_runner.py``; the fixture below makes a tiny synthetic sample dataset.
"""

import os
import sys

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "tests"))


@pytest.fixture(scope="session")
def tiny_sample_root(tmp_path_factory):
    """A datasets root holding ``vps-sample`` (small clips) for engine tests."""
    from vps_d2.data.sample_generator import make_sample_dataset

    root = tmp_path_factory.mktemp("datasets")
    make_sample_dataset(
        str(root / "vps-sample"), seed=3, train_clips=4, test_clips=1, frames_min=8,
        frames_max=10, height=64, width=80,
    )  # fmt: skip
    return str(root)
