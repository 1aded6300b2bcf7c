from .checkpointer import AtomicSaveMixin, CheckpointError, VPSCheckpointer, load_model_weights

__all__ = ["AtomicSaveMixin", "CheckpointError", "VPSCheckpointer", "load_model_weights"]
