from .checkpointer import CheckpointError, VPSCheckpointer, atomic_write_bytes, load_model_weights

__all__ = ["CheckpointError", "VPSCheckpointer", "atomic_write_bytes", "load_model_weights"]
