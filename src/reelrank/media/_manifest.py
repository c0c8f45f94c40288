"""Stream manifests: an HLS master playlist and a DASH MPD built from a video's renditions.

Both are written with the standard library only (plain text for HLS, following the
master-playlist tags of RFC 8216; :mod:`xml.etree.ElementTree` for the DASH MPD of
ISO/IEC 23009-1), so the core keeps its numpy/numba/pydantic-only dependencies.

Renditions are expected in the common CMAF layout: each rendition's ``uri`` names its
HLS media playlist, and the fragmented-MP4 segments that playlist lists sit in the same
directory, where the DASH manifest finds them through a segment template.
"""

from __future__ import annotations

import math
import posixpath
import xml.etree.ElementTree as ET
from fractions import Fraction
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field

from ..exceptions import InvalidInputError, NotReadyError
from ..models._base import StrictModel
from ..models._catalog import ProcessingState, Rendition, Video

__all__ = [
    "DASH_NAMESPACE",
    "ManifestConfig",
    "build_dash_mpd",
    "build_hls_master_playlist",
    "iso8601_duration",
]

DASH_NAMESPACE = "urn:mpeg:dash:schema:mpd:2011"
"""XML namespace of a DASH MPD (ISO/IEC 23009-1)."""

_DASH_LIVE_PROFILE = "urn:mpeg:dash:profile:isoff-live:2011"

_DASH_TIMESCALE = 1000

_MAX_FRAME_RATE_DENOMINATOR = 1001


# Characters that would end an HLS quoted-string or a tag line early (RFC 8216, 4.2).
_HLS_FORBIDDEN_IN_QUOTED = frozenset('"\r\n')

_HLS_FORBIDDEN_IN_URI = frozenset("\r\n")


class ManifestConfig(StrictModel):
    """How stream manifests are written; the renditions themselves come from the video."""

    hls_version: int = Field(default=7, ge=1, le=12)
    """Value of ``#EXT-X-VERSION`` in the HLS master playlist."""
    frame_rate: float | None = Field(default=None, gt=0.0, le=1_000.0, allow_inf_nan=False)
    """Frame rate of every rendition (``FRAME-RATE`` / ``frameRate``), or ``None`` to omit it."""
    peak_bitrate_ratio: float = Field(default=1.0, ge=1.0, le=10.0, allow_inf_nan=False)
    """Peak over average bitrate: HLS ``BANDWIDTH`` is the average bitrate times this."""
    segment_duration_seconds: float = Field(default=2.0, gt=0.0, le=60.0, allow_inf_nan=False)
    """Nominal duration of each media segment, for the DASH ``SegmentTemplate``."""
    segment_media: str = Field(default="segment-$Number$.m4s", min_length=1, max_length=256)
    """DASH media segment template, relative to the rendition's directory."""
    segment_initialization: str = Field(default="init.mp4", min_length=1, max_length=256)
    """DASH initialization segment, relative to the rendition's directory."""
    min_buffer_seconds: float = Field(default=2.0, gt=0.0, le=600.0, allow_inf_nan=False)
    """DASH ``minBufferTime``: how much the player buffers before it starts playing."""
    mime_type: str = Field(default="video/mp4", pattern=r"^[a-z]+/[A-Za-z0-9.+-]+$")
    """MIME type of the segments, for the DASH ``AdaptationSet``."""


_DEFAULT_CONFIG = ManifestConfig()


def iso8601_duration(seconds: float) -> str:
    """Write a non-negative duration as an ISO 8601 / ``xs:duration`` value.

    Hours, minutes and seconds, seconds to the millisecond: ``65.5`` gives
    ``"PT1M5.5S"``, ``3600`` gives ``"PT1H"``, ``0`` gives ``"PT0S"``.
    """
    if not math.isfinite(seconds) or seconds < 0.0:
        raise InvalidInputError("seconds", f"must be finite and >= 0, got {seconds!r}")
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    whole, millis = divmod(millis, 1000)
    parts = ["PT"]
    if hours:
        parts.append(f"{hours}H")
    if minutes:
        parts.append(f"{minutes}M")
    if whole or millis or not (hours or minutes):
        fraction = f".{millis:03d}".rstrip("0") if millis else ""
        parts.append(f"{whole}{fraction}S")
    return "".join(parts)


def _ready_renditions(video: Video) -> tuple[Rendition, ...]:
    if video.state is not ProcessingState.READY:
        raise NotReadyError(video.video_id, video.state.value)
    if not video.renditions:
        raise InvalidInputError("renditions", "a ready video needs at least one rendition")
    return video.renditions


def _check_hls_safe(index: int, rendition: Rendition) -> None:
    if _HLS_FORBIDDEN_IN_QUOTED.intersection(rendition.codec):
        raise InvalidInputError(
            f"renditions.{index}.codec", "must not contain a double quote or a line break"
        )
    if _HLS_FORBIDDEN_IN_URI.intersection(rendition.uri) or rendition.uri.startswith("#"):
        raise InvalidInputError(
            f"renditions.{index}.uri", "must not contain a line break or start with '#'"
        )


def _hls_frame_rate(frame_rate: float) -> str:
    return f"{frame_rate:.3f}"


def _dash_frame_rate(frame_rate: float) -> str:
    # DASH frame rates are an integer or a ratio ("30", "30000/1001"), never a decimal.
    ratio = Fraction(repr(frame_rate)).limit_denominator(_MAX_FRAME_RATE_DENOMINATOR)
    if ratio.denominator == 1:
        return str(ratio.numerator)
    return f"{ratio.numerator}/{ratio.denominator}"


def build_hls_master_playlist(video: Video, config: ManifestConfig | None = None) -> str:
    """The HLS master playlist (RFC 8216) of a ready video, as text.

    One ``#EXT-X-STREAM-INF`` per rendition, in the video's rendition order (players
    start with the first), each followed by the rendition's ``uri``. Raises
    :class:`~reelrank.NotReadyError` unless the video is ``ready``.
    """
    config = config or _DEFAULT_CONFIG
    renditions = _ready_renditions(video)
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{config.hls_version}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for index, rendition in enumerate(renditions):
        _check_hls_safe(index, rendition)
        average = rendition.bitrate_kbps * 1000
        attributes = [
            f"BANDWIDTH={math.ceil(average * config.peak_bitrate_ratio)}",
            f"AVERAGE-BANDWIDTH={average}",
            f"RESOLUTION={rendition.width}x{rendition.height}",
            f'CODECS="{rendition.codec}"',
        ]
        if config.frame_rate is not None:
            attributes.append(f"FRAME-RATE={_hls_frame_rate(config.frame_rate)}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(rendition.uri)
    return "\n".join(lines) + "\n"


def _directory_of(uri: str) -> str:
    # The segments live next to the rendition's media playlist: keep the path up to
    # and including its last slash, and drop any query or fragment of the playlist.
    parts = urlsplit(uri)
    directory = posixpath.dirname(parts.path)
    if directory and not directory.endswith("/"):
        directory += "/"
    return urlunsplit((parts.scheme, parts.netloc, directory, "", ""))


def build_dash_mpd(video: Video, config: ManifestConfig | None = None) -> str:
    """The DASH MPD (ISO/IEC 23009-1, live profile, static) of a ready video, as XML text.

    One ``Period`` with one video ``AdaptationSet``; its ``SegmentTemplate`` names the
    segments relative to each ``Representation``'s ``BaseURL``, which is the directory
    of the rendition's ``uri``. Raises :class:`~reelrank.NotReadyError` unless the
    video is ``ready``.
    """
    config = config or _DEFAULT_CONFIG
    renditions = _ready_renditions(video)
    duration = iso8601_duration(video.duration_seconds)
    mpd = ET.Element(
        "MPD",
        {
            "xmlns": DASH_NAMESPACE,
            "profiles": _DASH_LIVE_PROFILE,
            "type": "static",
            "mediaPresentationDuration": duration,
            "minBufferTime": iso8601_duration(config.min_buffer_seconds),
        },
    )
    period = ET.SubElement(mpd, "Period", {"id": "0", "start": "PT0S", "duration": duration})
    adaptation = ET.SubElement(
        period,
        "AdaptationSet",
        {
            "id": "0",
            "contentType": "video",
            "mimeType": config.mime_type,
            "segmentAlignment": "true",
            "startWithSAP": "1",
            "maxWidth": str(max(r.width for r in renditions)),
            "maxHeight": str(max(r.height for r in renditions)),
        },
    )
    if config.frame_rate is not None:
        adaptation.set("frameRate", _dash_frame_rate(config.frame_rate))
    ET.SubElement(
        adaptation,
        "SegmentTemplate",
        {
            "timescale": str(_DASH_TIMESCALE),
            "duration": str(max(1, round(config.segment_duration_seconds * _DASH_TIMESCALE))),
            "startNumber": "1",
            "media": config.segment_media,
            "initialization": config.segment_initialization,
        },
    )
    for index, rendition in enumerate(renditions):
        representation = ET.SubElement(
            adaptation,
            "Representation",
            {
                "id": f"video-{index}",
                "bandwidth": str(rendition.bitrate_kbps * 1000),
                "width": str(rendition.width),
                "height": str(rendition.height),
                "codecs": rendition.codec,
            },
        )
        directory = _directory_of(rendition.uri)
        if directory:
            ET.SubElement(representation, "BaseURL").text = directory
    ET.indent(mpd)
    return ET.tostring(mpd, encoding="unicode", xml_declaration=True) + "\n"
