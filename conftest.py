"""Shared pytest set-up of the whole suite (tests/ and each method's tests/ folder).

tests/ and its sub-folders go on ``sys.path``, so any test imports the shared helpers of
``tests/train_net_runner.py`` and the fixtures/helpers of another test module (e.g.
``from test_engine import CONFIG``) whatever the collection order; the fixture below makes
a tiny synthetic sample dataset.
"""

import os
import sys

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = os.path.dirname(os.path.abspath(__file__))
_TESTS = os.path.join(ROOT, "tests")
for _dir in sorted(d for d in os.listdir(_TESTS) if os.path.isdir(os.path.join(_TESTS, d))):
    if not _dir.startswith((".", "_")) and _dir != "plugins":
        sys.path.insert(0, os.path.join(_TESTS, _dir))
sys.path.insert(0, _TESTS)


@pytest.fixture(scope="session")
def tiny_sample_root(tmp_path_factory):
    """A datasets root holding ``vps-sample`` (small clips) for engine tests."""
    from vps_d2.synthetic import make_sample_dataset

    root = tmp_path_factory.mktemp("datasets")
    make_sample_dataset(
        str(root / "vps-sample"),
        seed=3,
        train_clips=4,
        test_clips=1,
        frames_min=8,
        frames_max=10,
        height=64,
        width=80,
    )
    return str(root)
