from .checkpointer import AtomicSaveMixin, CheckpointError, VPSCheckpointer, load_model_weights
from .convert import (
    CONVERTER_REGISTRY,
    ConversionError,
    ConversionResult,
    Rule,
    WeightConverter,
    read_state_dict,
    register_converter,
    save_converted,
)

__all__ = [
    "CONVERTER_REGISTRY",
    "AtomicSaveMixin",
    "CheckpointError",
    "ConversionError",
    "ConversionResult",
    "Rule",
    "VPSCheckpointer",
    "WeightConverter",
    "load_model_weights",
    "read_state_dict",
    "register_converter",
    "save_converted",
]
