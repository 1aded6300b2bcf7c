"""The built-in datasets are registered at import without building a config: their
settings are the config defaults, taken when a dataset is first loaded."""

from __future__ import annotations

import os
import subprocess
import sys

from train_net_runner import ROOT

SCRIPT = """
import os, sys
from vps_d2.data import DatasetCatalog
from vps_d2.data.datasets import BUILTIN_DATASETS, builtin
assert "sun_seg_val" in BUILTIN_DATASETS and "cvc612_test" in DatasetCatalog.list()
assert builtin._STATE == {}, builtin._STATE  # nothing configured at import
os.environ["VPS_DATASETS"] = sys.argv[1]
try:
    DatasetCatalog.get("sun_seg_val")
except ValueError as e:  # HOLDOUT_VAL defaults to 0: the split is empty, said so
    assert "HOLDOUT_VAL" in str(e), e
else:
    raise AssertionError("sun_seg_val loaded with the default HOLDOUT_VAL 0")
assert builtin._STATE["holdout_val"] == 0.0 and builtin._STATE["cvc612"]["test"]
"""


def test_import_builds_no_config_and_loading_uses_the_defaults(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    env.pop("DETECTRON2_DATASETS", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
