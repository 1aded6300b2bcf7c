"""DatasetCatalog and MetadataCatalog, as in Detectron2.

``DatasetCatalog.register(name, fn)`` stores a loader; ``DatasetCatalog.get(name)``
calls it and returns a list of *video records* (see :mod:`vps_d2.data`).
``MetadataCatalog.get(name)`` returns a mutable :class:`Metadata` for the name
(``evaluator_type``, ``root``, ``split``, ``class_names`` ...).
Registration happens at import time of :mod:`vps_d2`, so spawned processes see it.
"""

from __future__ import annotations

import logging
from collections import UserDict
from collections.abc import Callable
from typing import Any

__all__ = ["DatasetCatalog", "MetadataCatalog", "Metadata"]

logger = logging.getLogger(__name__)


class _DatasetCatalog(UserDict):
    """name -> function returning ``list[dict]`` (one dict per video)."""

    def register(self, name: str, func: Callable[[], list[dict]]) -> None:
        if not callable(func):
            raise TypeError(f"DatasetCatalog.register({name!r}): the loader must be callable")
        if name in self:
            raise KeyError(f"Dataset '{name}' is already registered")
        self[name] = func

    def get(self, name: str) -> list[dict]:  # type: ignore[override]
        try:
            func = self[name]
        except KeyError as e:
            raise KeyError(
                f"Dataset '{name}' is not registered. Registered datasets: "
                f"{', '.join(sorted(self.keys()))}"
            ) from e
        return func()

    def list(self) -> list[str]:
        return list(self.keys())

    def remove(self, name: str) -> None:
        self.pop(name)


class Metadata:
    """Attribute bag for one dataset; attributes can be set once (or to the same value)."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        raise AttributeError(
            f"Metadata of dataset '{self.name}' has no attribute '{key}'. "
            f"Available: {sorted(self.__dict__)}"
        )

    def __setattr__(self, key: str, value: Any) -> None:
        old = self.__dict__.get(key, value)
        if old != value:
            raise AttributeError(
                f"Metadata '{key}' of dataset '{self.name}' cannot be changed from {old!r} "
                f"to {value!r}"
            )
        object.__setattr__(self, key, value)

    def set(self, **kwargs: Any) -> Metadata:
        for k, v in kwargs.items():
            setattr(self, k, v)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def as_dict_without_name(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "name"}


class _MetadataCatalog(UserDict):
    def get(self, name: str) -> Metadata:  # type: ignore[override]
        if name not in self:
            self[name] = Metadata(name)
        return self[name]

    def remove(self, name: str) -> None:
        self.pop(name, None)


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()
