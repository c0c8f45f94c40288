from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reelrank import ConfigError, CursorError, InvalidInputError
from reelrank.feed._cursor import CursorCodec, CursorState

SECRET = b"0123456789abcdef-secret"
MAX_AGE = 600.0


def codec(secret: bytes = SECRET) -> CursorCodec:
    return CursorCodec(secret, MAX_AGE)


@given(
    user=st.text(min_size=1, max_size=40),
    snapshot=st.text(min_size=1, max_size=40),
    offset=st.integers(min_value=0, max_value=10**9),
    issued=st.floats(min_value=0, max_value=4e9),
)
def test_round_trip_returns_the_same_state(
    user: str, snapshot: str, offset: int, issued: float
) -> None:
    state = CursorState(user, snapshot, offset, issued)
    token = codec().encode(state)
    assert codec().decode(token, user_id=user, now=issued) == state


def test_token_is_opaque_url_safe_text() -> None:
    token = codec().encode(CursorState("alice", "snap-1", 20, 1000.0))
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert "alice" not in token


@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_single_byte_change_is_detected(position: int, flip: int) -> None:
    token = codec().encode(CursorState("alice", "snap-1", 20, 1000.0))
    raw = bytearray(token.encode())
    index = position % len(raw)
    raw[index] = (raw[index] + flip) % 128 or 1
    altered = raw.decode("ascii", errors="replace")
    if altered == token:
        return
    with pytest.raises(CursorError):
        codec().decode(altered, user_id="alice", now=1000.0)


def test_edited_offset_with_the_old_signature_is_rejected() -> None:
    token = codec().encode(CursorState("alice", "snap-1", 20, 1000.0))
    _, mac = token.split(".")
    payload = json.dumps([1, "alice", "snap-1", 0, 1000.0], separators=(",", ":")).encode()
    forged = base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + mac
    with pytest.raises(CursorError, match="signature"):
        codec().decode(forged, user_id="alice", now=1000.0)


def test_cursor_signed_with_another_secret_is_rejected() -> None:
    token = codec(b"another-secret-of-16+bytes").encode(CursorState("alice", "s", 0, 1000.0))
    with pytest.raises(CursorError, match="signature"):
        codec().decode(token, user_id="alice", now=1000.0)


def test_foreign_cursor_is_rejected() -> None:
    token = codec().encode(CursorState("alice", "s", 10, 1000.0))
    with pytest.raises(CursorError, match="another user"):
        codec().decode(token, user_id="bob", now=1000.0)


def test_expiry_is_enforced_at_max_age() -> None:
    token = codec().encode(CursorState("alice", "s", 10, 1000.0))
    assert codec().decode(token, user_id="alice", now=1000.0 + MAX_AGE).offset == 10
    with pytest.raises(CursorError, match="expired"):
        codec().decode(token, user_id="alice", now=1000.0 + MAX_AGE + 0.001)


@pytest.mark.parametrize(
    "token", ["", "no-dot", "!!!.???", "a.b.c", 42, None, "x" * 5000, "e30.e30"]
)
def test_malformed_tokens_raise_cursor_error_naming_the_field(token: object) -> None:
    with pytest.raises(CursorError) as info:
        codec().decode(token, user_id="alice", now=1000.0)
    assert isinstance(info.value, InvalidInputError)
    assert info.value.field == "cursor"


def test_short_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        CursorCodec(b"short", MAX_AGE)
    assert info.value.field == "cursor_secret"


def test_non_canonical_base64_spelling_is_rejected() -> None:
    token = codec().encode(CursorState("alice", "snap-1", 20, 1000.0))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    # A 32-byte MAC is 43 characters: the last one carries 4 bits and 2 spare bits.
    sibling = alphabet[last ^ 1]
    altered = token[:-1] + sibling
    assert base64.urlsafe_b64decode(altered.split(".")[1] + "=") == base64.urlsafe_b64decode(
        token.split(".")[1] + "="
    )
    with pytest.raises(CursorError):
        codec().decode(altered, user_id="alice", now=1000.0)
