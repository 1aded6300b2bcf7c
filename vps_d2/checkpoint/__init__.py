from .checkpointer import VPSCheckpointer, atomic_write_bytes, load_model_weights

__all__ = ["VPSCheckpointer", "atomic_write_bytes", "load_model_weights"]
