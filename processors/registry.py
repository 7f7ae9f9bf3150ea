"""Detector name -> class, and building the enabled detectors from config. No entry-point magic.

The config selects detectors by these names (``detectors.enabled``). Each detector class takes its own
config section, so building goes through one small factory per name; :data:`DETECTORS` is the public
name -> class map that documentation, the CLI and tests list.
"""

from __future__ import annotations

from collections.abc import Callable

from flushwatch.config import Config
from processors.base import Detector
from processors.cascade import CascadeDetector

__all__ = ["DETECTORS", "build_detectors"]

DETECTORS: dict[str, type[Detector]] = {
    CascadeDetector.name: CascadeDetector,
}

_FACTORIES: dict[str, Callable[[Config], Detector]] = {
    CascadeDetector.name: lambda config: CascadeDetector(config.cascade),
}


def build_detectors(config: Config) -> list[Detector]:
    """Fresh detectors for ``config.detectors.enabled``, in that order.

    Raises:
        ValueError: a name is unknown (the message names it and the known ones) or listed twice.
    """
    detectors: list[Detector] = []
    seen: set[str] = set()
    for name in config.detectors.enabled:
        factory = _FACTORIES.get(name)
        if factory is None:
            raise ValueError(f"unknown detector {name!r}; known detectors: {', '.join(sorted(DETECTORS))}")
        if name in seen:
            raise ValueError(f"detector {name!r} is enabled twice")
        seen.add(name)
        detectors.append(factory(config))
    return detectors
