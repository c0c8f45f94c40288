"""Manifests are parsed back with real HLS and DASH parsers, never compared as strings."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from fractions import Fraction

import m3u8
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mpegdash.parser import MPEGDASHParser

from reelrank import (
    ConfigError,
    InvalidInputError,
    ManifestConfig,
    NotReadyError,
    ProcessingState,
    Rendition,
    Video,
    build_dash_mpd,
    build_hls_master_playlist,
    iso8601_duration,
)

MPD_NAMESPACE = "urn:mpeg:dash:schema:mpd:2011"
PUBLISHED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def make_video(
    renditions: list[Rendition],
    *,
    state: ProcessingState = ProcessingState.READY,
    duration: float = 42.0,
) -> Video:
    return Video(
        video_id=7,
        creator_id=3,
        duration_seconds=duration,
        published_at=PUBLISHED,
        renditions=tuple(renditions),
        state=state,
    )


LADDER = [
    Rendition(
        width=1080,
        height=1920,
        bitrate_kbps=4500,
        codec="avc1.640028,mp4a.40.2",
        uri="https://cdn.example/v/7/1080p/index.m3u8",
    ),
    Rendition(
        width=720,
        height=1280,
        bitrate_kbps=2500,
        codec="avc1.64001f,mp4a.40.2",
        uri="https://cdn.example/v/7/720p/index.m3u8?token=abc",
    ),
    Rendition(width=360, height=640, bitrate_kbps=700, codec="avc1.42e01e", uri="360p.m3u8"),
]


def parse_iso_duration(text: str) -> float:
    """Independent reader of the H/M/S subset of ISO 8601 durations."""
    match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?", text)
    assert match is not None and text != "PT", text
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


# -- HLS ------------------------------------------------------------------------------


def test_hls_master_playlist_parses_back() -> None:
    text = build_hls_master_playlist(make_video(LADDER), ManifestConfig(frame_rate=30.0))
    playlist = m3u8.loads(text)
    assert playlist.is_variant
    assert playlist.version == 7
    assert playlist.is_independent_segments
    assert [p.uri for p in playlist.playlists] == [r.uri for r in LADDER]
    for parsed, rendition in zip(playlist.playlists, LADDER, strict=True):
        info = parsed.stream_info
        assert info.bandwidth == rendition.bitrate_kbps * 1000
        assert info.average_bandwidth == rendition.bitrate_kbps * 1000
        assert info.resolution == (rendition.width, rendition.height)
        assert info.codecs == rendition.codec
        assert info.frame_rate == 30.0


def test_hls_peak_ratio_raises_bandwidth_above_average() -> None:
    config = ManifestConfig(peak_bitrate_ratio=1.5, hls_version=4)
    playlist = m3u8.loads(build_hls_master_playlist(make_video(LADDER), config))
    assert playlist.version == 4
    for parsed, rendition in zip(playlist.playlists, LADDER, strict=True):
        assert parsed.stream_info.bandwidth == math.ceil(rendition.bitrate_kbps * 1000 * 1.5)
        assert parsed.stream_info.average_bandwidth == rendition.bitrate_kbps * 1000
        assert parsed.stream_info.frame_rate is None


def test_hls_starts_with_the_required_header() -> None:
    lines = build_hls_master_playlist(make_video(LADDER)).splitlines()
    assert lines[0] == "#EXTM3U"
    assert lines[1].startswith("#EXT-X-VERSION:")


@pytest.mark.parametrize(
    ("field", "rendition"),
    [
        (
            "renditions.1.codec",
            Rendition(width=2, height=2, bitrate_kbps=1, codec='avc1"x', uri="a.m3u8"),
        ),
        (
            "renditions.1.uri",
            Rendition(width=2, height=2, bitrate_kbps=1, codec="avc1", uri="a.m3u8\n#EXT"),
        ),
        (
            "renditions.1.uri",
            Rendition(width=2, height=2, bitrate_kbps=1, codec="avc1", uri="#EXT-X-ENDLIST"),
        ),
    ],
)
def test_hls_refuses_values_that_would_break_the_playlist(field: str, rendition: Rendition) -> None:
    with pytest.raises(InvalidInputError) as info:
        build_hls_master_playlist(make_video([LADDER[0], rendition]))
    assert info.value.field == field


# -- DASH -----------------------------------------------------------------------------


def test_dash_mpd_parses_back() -> None:
    config = ManifestConfig(frame_rate=29.97, segment_duration_seconds=4.0)
    text = build_dash_mpd(make_video(LADDER, duration=65.5), config)
    root = ET.fromstring(text.encode())
    assert root.tag == f"{{{MPD_NAMESPACE}}}MPD"

    mpd = MPEGDASHParser.parse(text)
    assert mpd.type == "static"
    assert "urn:mpeg:dash:profile:isoff-live:2011" in mpd.profiles.split(",")
    assert parse_iso_duration(mpd.media_presentation_duration) == 65.5
    assert parse_iso_duration(mpd.min_buffer_time) == 2.0
    (period,) = mpd.periods
    (adaptation,) = period.adaptation_sets
    assert adaptation.mime_type == "video/mp4"
    assert Fraction(adaptation.frame_rate) == Fraction("29.97")
    (template,) = adaptation.segment_templates
    assert template.duration / template.timescale == 4.0
    assert template.media == "segment-$Number$.m4s"
    assert template.initialization == "init.mp4"
    assert adaptation.max_width == 1080 and adaptation.max_height == 1920

    representations = adaptation.representations
    assert len({r.id for r in representations}) == len(LADDER)
    for parsed, rendition in zip(representations, LADDER, strict=True):
        assert parsed.bandwidth == rendition.bitrate_kbps * 1000
        assert (parsed.width, parsed.height) == (rendition.width, rendition.height)
        assert parsed.codecs == rendition.codec
    bases = [r.base_urls[0].base_url_value if r.base_urls else None for r in representations]
    assert bases == ["https://cdn.example/v/7/1080p/", "https://cdn.example/v/7/720p/", None]


def test_dash_ntsc_frame_rate_is_a_ratio() -> None:
    text = build_dash_mpd(make_video(LADDER), ManifestConfig(frame_rate=30000 / 1001))
    adaptation = MPEGDASHParser.parse(text).periods[0].adaptation_sets[0]
    assert adaptation.frame_rate == "30000/1001"


def test_dash_escapes_xml_special_characters() -> None:
    rendition = Rendition(
        width=64, height=64, bitrate_kbps=10, codec="x<&>'\"", uri="https://h/a&b/<c>/p.m3u8"
    )
    text = build_dash_mpd(make_video([rendition]))
    parsed = MPEGDASHParser.parse(text).periods[0].adaptation_sets[0].representations[0]
    assert parsed.codecs == "x<&>'\""
    assert parsed.base_urls[0].base_url_value == "https://h/a&b/<c>/"


# -- readiness ---------------------------------------------------------------------------


@pytest.mark.parametrize("state", [s for s in ProcessingState if s is not ProcessingState.READY])
@pytest.mark.parametrize("build", [build_hls_master_playlist, build_dash_mpd])
def test_only_ready_videos_have_manifests(state: ProcessingState, build: object) -> None:
    assert callable(build)
    with pytest.raises(NotReadyError) as info:
        build(make_video(LADDER, state=state))
    assert info.value.state == state.value
    assert info.value.video_id == 7
    assert state.value in str(info.value)


@pytest.mark.parametrize("build", [build_hls_master_playlist, build_dash_mpd])
def test_ready_video_without_renditions_is_refused(build: object) -> None:
    assert callable(build)
    with pytest.raises(InvalidInputError) as info:
        build(make_video([]))
    assert info.value.field == "renditions"


def test_manifest_config_names_the_bad_field() -> None:
    with pytest.raises(ConfigError) as info:
        ManifestConfig(frame_rate=-1.0)
    assert info.value.field == "frame_rate"
    with pytest.raises(ConfigError) as info:
        ManifestConfig(segment_lenght=2.0)  # type: ignore[call-arg]
    assert info.value.field == "segment_lenght"


# -- properties ------------------------------------------------------------------------

path_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8)
codec_part = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.", min_size=1, max_size=12)

renditions_strategy = st.lists(
    st.builds(
        Rendition,
        width=st.integers(1, 16_384),
        height=st.integers(1, 16_384),
        bitrate_kbps=st.integers(1, 10_000_000),
        codec=st.lists(codec_part, min_size=1, max_size=3).map(",".join),
        uri=st.tuples(
            st.sampled_from(["", "https://cdn.example/", "/abs/"]),
            st.lists(path_segment, min_size=0, max_size=3),
            path_segment,
        ).map(lambda t: t[0] + "".join(seg + "/" for seg in t[1]) + t[2] + ".m3u8"),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@example([LADDER[2]], 2.0625, 2.0625)
@example([LADDER[2]], 1.0, 1.00001)
@given(
    renditions_strategy,
    st.floats(min_value=0.001, max_value=86_400.0),
    st.one_of(st.none(), st.floats(min_value=1.0, max_value=240.0)),
)
def test_any_rendition_set_round_trips_through_both_parsers(
    renditions: list[Rendition], duration: float, frame_rate: float | None
) -> None:
    video = make_video(renditions, duration=duration)
    config = ManifestConfig(frame_rate=frame_rate)

    playlist = m3u8.loads(build_hls_master_playlist(video, config))
    assert [p.uri for p in playlist.playlists] == [r.uri for r in renditions]
    for parsed, rendition in zip(playlist.playlists, renditions, strict=True):
        assert parsed.stream_info.resolution == (rendition.width, rendition.height)
        assert parsed.stream_info.average_bandwidth == rendition.bitrate_kbps * 1000
        assert parsed.stream_info.codecs == rendition.codec
        if frame_rate is None:
            assert parsed.stream_info.frame_rate is None
        else:
            # Written with three decimals: off by at most half a thousandth.
            assert parsed.stream_info.frame_rate == pytest.approx(frame_rate, abs=5.000001e-4)

    mpd = MPEGDASHParser.parse(build_dash_mpd(video, config))
    assert parse_iso_duration(mpd.media_presentation_duration) == pytest.approx(
        duration, abs=5.000001e-4
    )
    adaptation = mpd.periods[0].adaptation_sets[0]
    if frame_rate is not None:
        # The closest ratio with a denominator up to 1001 is within 1/1001 of the rate.
        assert float(Fraction(adaptation.frame_rate)) == pytest.approx(frame_rate, abs=1 / 1001)
    parsed_reps = adaptation.representations
    assert len(parsed_reps) == len(renditions)
    for parsed, rendition in zip(parsed_reps, renditions, strict=True):
        assert parsed.bandwidth == rendition.bitrate_kbps * 1000
        assert (parsed.width, parsed.height) == (rendition.width, rendition.height)
        assert parsed.codecs == rendition.codec
        directory = rendition.uri.rpartition("/")[0]
        if directory or rendition.uri.startswith("/"):
            assert parsed.base_urls[0].base_url_value == directory + "/"
        else:
            assert not parsed.base_urls


@given(st.floats(min_value=0.0, max_value=10_000_000.0))
def test_iso8601_duration_round_trips_to_the_millisecond(seconds: float) -> None:
    assert parse_iso_duration(iso8601_duration(seconds)) == pytest.approx(
        round(seconds * 1000) / 1000, abs=1e-6
    )


@pytest.mark.parametrize("seconds", [-1.0, math.nan, math.inf])
def test_iso8601_duration_refuses_bad_values(seconds: float) -> None:
    with pytest.raises(InvalidInputError):
        iso8601_duration(seconds)
