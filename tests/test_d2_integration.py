"""Registration into a real Detectron2 (only where Detectron2 is installed: it is not on
PyPI, so CI skips this file) and the clear error where it is not."""

import importlib.util

import pytest

HAS_D2 = importlib.util.find_spec("detectron2") is not None


@pytest.mark.skipif(HAS_D2, reason="Detectron2 is installed")
def test_clear_error_without_detectron2():
    from vps_d2.d2 import register_all

    with pytest.raises(ImportError, match="not on PyPI"):
        register_all()


@pytest.mark.skipif(not HAS_D2, reason="Detectron2 is not installed (not on PyPI)")
def test_registers_into_detectron2():
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.modeling import META_ARCH_REGISTRY

    from vps_d2.d2 import register_all

    register_all()
    assert "FrameBaseline" in META_ARCH_REGISTRY
    assert "vps_sample_train" in DatasetCatalog.list()
    assert MetadataCatalog.get("vps_sample_train").evaluator_type == "vps"
