"""Opaque, tamper-evident page cursors.

A cursor is ``base64url(payload) "." base64url(HMAC-SHA256(secret, payload))`` where the
payload is a compact JSON object holding the user it was issued to, the snapshot it
pages through, the offset of the next item and the time it was issued. The signature
makes any edit detectable; the user binding makes a cursor useless to anyone else; the
issue time bounds its life.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
from dataclasses import dataclass

from ..exceptions import ConfigError, CursorError

__all__ = ["CursorCodec", "CursorState"]

_VERSION = 1

_MAX_TOKEN_CHARS = 2048
"""Longer tokens are rejected before any decoding work is spent on them."""


@dataclass(frozen=True, slots=True)
class CursorState:
    """What a cursor pins: whose feed, which snapshot, where the next page starts."""

    user_id: str
    """The user the cursor was issued to."""
    snapshot_id: str
    """Identifier of the ranked snapshot the pages are cut from."""
    offset: int
    """Position in the snapshot of the first item of the next page."""
    issued_at: float
    """Epoch seconds at which the cursor was issued; it expires ``max_age`` later."""


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise CursorError("not a valid cursor encoding") from exc


class CursorCodec:
    """Signs and verifies page cursors with HMAC-SHA256.

    ``secret`` must be shared by every process that serves the same users, so a cursor
    issued by one process can be redeemed by another. ``max_age_seconds`` is how long a
    cursor stays valid after it was issued.
    """

    def __init__(self, secret: bytes, max_age_seconds: float) -> None:
        if len(secret) < 16:
            raise ConfigError("cursor_secret", "<hidden>", "must be at least 16 bytes")
        if not (math.isfinite(max_age_seconds) and max_age_seconds > 0):
            raise ConfigError(
                "cursor_max_age_seconds", max_age_seconds, "must be finite and positive"
            )
        self._secret = secret
        self._max_age = max_age_seconds

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def encode(self, state: CursorState) -> str:
        """Return the opaque token for ``state``."""
        payload = json.dumps(
            [_VERSION, state.user_id, state.snapshot_id, state.offset, state.issued_at],
            separators=(",", ":"),
            ensure_ascii=True,
        ).encode("ascii")
        return f"{_b64encode(payload)}.{_b64encode(self._sign(payload))}"

    def decode(self, token: object, *, user_id: str, now: float) -> CursorState:
        """Verify ``token`` and return its state.

        Raises :class:`~reelrank.CursorError` if the token is malformed, its signature
        does not match (forged or edited), it was issued to another user, or it is
        older than ``max_age_seconds`` at ``now``.
        """
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            raise CursorError("must be a non-empty cursor string returned by a previous page")
        encoded_payload, dot, encoded_mac = token.partition(".")
        if not dot:
            raise CursorError("not a valid cursor encoding")
        payload = _b64decode(encoded_payload)
        mac = _b64decode(encoded_mac)
        # Base64 leaves spare bits in the last character; only the canonical spelling
        # is accepted, so every changed character is detected.
        if _b64encode(payload) != encoded_payload or _b64encode(mac) != encoded_mac:
            raise CursorError("not a valid cursor encoding")
        if not hmac.compare_digest(mac, self._sign(payload)):
            raise CursorError("signature does not match: the cursor was forged or altered")
        # From here on the payload was written by us, so its shape is trusted.
        version, owner, snapshot_id, offset, issued_at = json.loads(payload)
        if version != _VERSION:
            raise CursorError(f"unsupported cursor version {version!r}")
        if not hmac.compare_digest(str(owner).encode(), user_id.encode()):
            raise CursorError("the cursor was issued to another user")
        if now - issued_at > self._max_age:
            raise CursorError("the cursor has expired; request the first page again")
        return CursorState(
            user_id=owner, snapshot_id=snapshot_id, offset=int(offset), issued_at=issued_at
        )
