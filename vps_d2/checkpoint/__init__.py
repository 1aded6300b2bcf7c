from .checkpointer import CheckpointError, VPSCheckpointer, load_model_weights

__all__ = ["CheckpointError", "VPSCheckpointer", "load_model_weights"]
