"""DATASETS.SYNTHETIC: synthetic datasets (tools/synthesize.py's SUN-SEG layout + a
synthetic.json manifest) registered by folder under their manifest's name; incomplete or
foreign folders are one clear error."""

import json
import os

import cv2
import numpy as np
import pytest

from vps_d2.config import add_vps_config, get_cfg
from vps_d2.data import DatasetCatalog, MetadataCatalog
from vps_d2.data.datasets import configure_datasets, register_synthetic_dataset


def _write(folder, name, complete=True, videos=("case1", "case2")):
    for v in videos:
        for d, ext in (("Frame", "jpg"), ("GT", "png")):
            os.makedirs(folder / "TrainDataset" / d / v, exist_ok=True)
            for i in range(3):
                img = (
                    np.zeros((16, 20, 3), np.uint8)
                    if d == "Frame"
                    else np.zeros((16, 20), np.uint8)
                )
                img[4:10, 5:12] = 255
                cv2.imwrite(str(folder / "TrainDataset" / d / v / f"{v}_image{i}.{ext}"), img)
    manifest = {"name": name, "split_dir": "TrainDataset", "complete": complete, "source": "x"}
    (folder / "synthetic.json").write_text(json.dumps(manifest))


def test_synthetic_folder_registers_under_its_name(tmp_path):
    _write(tmp_path / "s", "synthetic_test_a")
    cfg = add_vps_config(get_cfg())
    cfg.DATASETS.SYNTHETIC = (str(tmp_path / "s"),)
    configure_datasets(cfg)
    configure_datasets(cfg)  # idempotent
    records = DatasetCatalog.get("synthetic_test_a")
    assert [r["video_id"] for r in records] == ["case1", "case2"]
    assert all(r["length"] == 3 and r["class_id"] == -1 for r in records)
    assert records[0]["boxes"][0] == [5.0, 4.0, 7.0, 6.0]  # from the mask
    md = MetadataCatalog.get("synthetic_test_a")
    assert md.synthetic and md.gt_root == os.path.join(str(tmp_path / "s"), "TrainDataset", "GT")


def test_incomplete_or_foreign_folders_are_clear_errors(tmp_path):
    _write(tmp_path / "half", "synthetic_test_b", complete=False)
    with pytest.raises(ValueError, match="did not finish.*rerun"):
        register_synthetic_dataset(str(tmp_path / "half"))
    os.makedirs(tmp_path / "plain")
    with pytest.raises(FileNotFoundError, match="DATASETS.SYNTHETIC.*synthetic.json"):
        register_synthetic_dataset(str(tmp_path / "plain"))
    _write(tmp_path / "clash", "vps_sample_train")
    with pytest.raises(KeyError, match="already registered"):
        register_synthetic_dataset(str(tmp_path / "clash"))
