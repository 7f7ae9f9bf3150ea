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
from processors.clusters import ClustersDetector
from processors.funding import FundingDetector
from processors.levels import LevelsDetector
from processors.oi_flush import OiFlushDetector

__all__ = ["DETECTORS", "build_detectors"]

DETECTORS: dict[str, type[Detector]] = {
    CascadeDetector.name: CascadeDetector,
    OiFlushDetector.name: OiFlushDetector,
    FundingDetector.name: FundingDetector,
    LevelsDetector.name: LevelsDetector,
    ClustersDetector.name: ClustersDetector,
}

_FACTORIES: dict[str, Callable[[Config], Detector]] = {
    CascadeDetector.name: lambda config: CascadeDetector(config.cascade),
    OiFlushDetector.name: lambda config: OiFlushDetector(config.oi_flush),
    FundingDetector.name: lambda config: FundingDetector(config.funding),
    LevelsDetector.name: lambda config: LevelsDetector(config.levels),
    ClustersDetector.name: lambda config: ClustersDetector(config.clusters),
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
