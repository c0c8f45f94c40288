"""Media: HLS and DASH manifests, and the processing pipeline's progress."""

from __future__ import annotations

from .._public import _public_module
from ._manifest import ManifestConfig, build_dash_mpd, build_hls_master_playlist, iso8601_duration
from ._processing import ProcessingTracker

__all__ = [
    "ManifestConfig",
    "ProcessingTracker",
    "build_dash_mpd",
    "build_hls_master_playlist",
    "iso8601_duration",
]

_public_module(__name__, __all__, globals())
