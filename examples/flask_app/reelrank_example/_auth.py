"""Bearer-token authentication: the caller is the ``sub`` of a JWT verified with PyJWT."""

from __future__ import annotations

import hmac
import json
import math
import re
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from reelrank import ConfigError

from ._settings import Settings

__all__ = ["AuthError", "Authenticator", "issue_token"]

_USER_ID = re.compile(r"[1-9][0-9]{0,18}")
_MAX_ID = 2**63 - 1
_HMAC = ("HS256", "HS384", "HS512")
# Tokens verified recently, remembered by their exact text: a client sends the same
# token with every request, and checking its signature again costs more than the rest
# of a cached feed page's authentication.
_VERIFIED_TOKENS = 10_000


class AuthError(Exception):
    """A missing, malformed, expired or wrongly signed token (answered with 401)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ForbiddenError(Exception):
    """A caller whose credentials are valid but do not allow the request (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Authenticator:
    """Verifies tokens with the keys and the fixed algorithm list of the settings.

    The algorithms come from configuration only, so a token that names another one
    (``none``, or HS256 signed with a public key as its secret) is refused.
    """

    def __init__(self, settings: Settings, *, secret: str | None = None) -> None:
        self._leeway = timedelta(seconds=settings.auth_leeway_seconds)
        self._issuer = settings.auth_issuer
        self._audience = settings.auth_audience
        self._secret = secret or (
            settings.auth_secret.get_secret_value() if settings.auth_secret else None
        )
        self._public_key: Any = None
        self._jwks: jwt.PyJWKSet | None = None
        if settings.auth_public_key_file is not None:
            self._public_key = _read(settings.auth_public_key_file, "auth_public_key_file")
        if settings.auth_jwks_file is not None:
            raw = _read(settings.auth_jwks_file, "auth_jwks_file")
            try:
                self._jwks = jwt.PyJWKSet.from_json(raw)
            except (jwt.PyJWTError, ValueError, json.JSONDecodeError) as exc:
                raise ConfigError("auth_jwks_file", settings.auth_jwks_file, str(exc)) from None
        asymmetric = self._public_key is not None or self._jwks is not None
        if self._secret is None and not asymmetric:
            raise ConfigError(
                "auth_secret", None, "set an auth secret, public key or JWKS, or run in demo mode"
            )
        algorithms = settings.auth_algorithms or (
            (("HS256",) if self._secret else ()) + (("RS256", "ES256") if asymmetric else ())
        )
        if any(alg in _HMAC for alg in algorithms) and self._secret is None:
            raise ConfigError("auth_algorithms", algorithms, "HMAC algorithms need auth_secret")
        if any(alg not in _HMAC for alg in algorithms) and not asymmetric:
            raise ConfigError("auth_algorithms", algorithms, "RSA and EC need a public key")
        self.algorithms: tuple[str, ...] = tuple(algorithms)
        """The algorithms a token may be signed with."""
        self._service_token = (
            settings.service_token.get_secret_value().encode()
            if settings.service_token is not None
            else None
        )
        # token -> (user id, valid from, valid until), in seconds since the epoch with
        # the leeway applied: the claims' times are checked on every use.
        self._verified: dict[str, tuple[int, float, float]] = {}
        self._verified_lock = threading.Lock()

    def check_service(self, header: str | None) -> None:
        """Pass a request bearing the service token; otherwise :class:`AuthError` (no or
        an unknown token, 401) or :class:`ForbiddenError` (a valid user token, or no
        service token configured, 403)."""
        if self._service_token is None:
            raise ForbiddenError("internal endpoints are off: set REELRANK_SERVICE_TOKEN")
        if header is None:
            raise AuthError("this endpoint needs an Authorization: Bearer <service token>")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self._service_token
        ):
            return
        try:
            self.user_id(header)
        except AuthError:
            raise AuthError("the service token is not valid") from None
        raise ForbiddenError("a user token cannot call an internal endpoint")

    def user_id(self, header: str | None) -> int:
        """The user of an ``Authorization`` header value; :class:`AuthError` otherwise."""
        if header is None:
            raise AuthError("this endpoint needs an Authorization: Bearer token")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("the Authorization header must be 'Bearer <token>'")
        token = token.strip()
        known = self._verified.get(token)
        if known is not None and known[1] <= time.time() < known[2]:
            return known[0]
        try:
            unverified = jwt.get_unverified_header(token)
            alg = unverified.get("alg")
            if alg not in self.algorithms:
                raise AuthError(f"tokens signed with {alg!r} are not accepted")
            claims = jwt.decode(
                token,
                key=self._key(alg, unverified.get("kid")),
                algorithms=[alg],
                leeway=self._leeway,
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("the token is not valid yet") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not _USER_ID.fullmatch(subject):
            raise AuthError("the token's sub must be a user id (a positive integer)")
        user_id = int(subject)
        if user_id > _MAX_ID:
            raise AuthError("the token's sub is out of range")
        self._remember(token, user_id, claims)
        return user_id

    def _remember(self, token: str, user_id: int, claims: dict[str, Any]) -> None:
        """Keep a verified token for its next uses, valid between the times PyJWT checks
        (``nbf`` and ``iat`` not in the future, ``exp`` not past, each with the leeway)."""
        leeway = self._leeway.total_seconds()
        starts = [int(claims[name]) for name in ("nbf", "iat") if name in claims]
        valid_from = max(starts) - leeway if starts else -math.inf
        valid_until = int(claims["exp"]) + leeway
        with self._verified_lock:
            if len(self._verified) >= _VERIFIED_TOKENS:
                self._verified.clear()
            self._verified[token] = (user_id, valid_from, valid_until)

    def issue(self, user_id: int) -> str:
        """A 24-hour HS256 token for ``user_id`` (the explorer page in demo mode).

        Raises :class:`~reelrank.ConfigError` when no HMAC secret is accepted.
        """
        if self._secret is None or "HS256" not in self.algorithms:
            raise ConfigError("auth_secret", None, "issuing tokens needs an HS256 secret")
        return issue_token(self._secret, user_id)

    def _key(self, alg: str, kid: object) -> Any:
        if alg in _HMAC:
            return self._secret
        if self._jwks is not None:
            for key in self._jwks.keys:
                if kid is None or key.key_id == kid:
                    return key.key
            raise AuthError(f"no key with kid {kid!r} in the JWKS")
        return self._public_key


def _read(path: str, field: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(field, path, f"cannot be read: {exc.strerror}") from None


def issue_token(secret: str, user_id: int, *, hours: float = 24.0) -> str:
    """An HS256 token for ``user_id`` valid for ``hours`` (demo mode and tests)."""
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(hours=hours),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm="HS256")
