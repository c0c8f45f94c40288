"""An example Flask application serving reelrank's feeds, events and discovery over HTTP.

Build the services, hand them to the app factory, serve::

    from reelrank_example import Settings, build_default_services, create_app

    services = build_default_services(Settings(seed=7))
    app = create_app(services)

``python -m reelrank_example`` does the same from environment variables
(``REELRANK_EXAMPLE_PORT=8080`` and so on; see :class:`Settings`).
"""

from __future__ import annotations

from flask import Flask

from ._app import (
    DASH_CONTENT_TYPE,
    DEFAULT_PAGE_SIZE,
    ERROR_STATUSES,
    HLS_CONTENT_TYPE,
    RequestError,
    create_app,
)
from ._services import (
    FIRST_USER_ID,
    FIRST_VIDEO_ID,
    Services,
    Stores,
    build_default_services,
    build_services,
    memory_stores,
    redis_stores,
    seed_synthetic_catalog,
)
from ._settings import ENV_PREFIX, Settings

__all__ = [
    "DASH_CONTENT_TYPE",
    "DEFAULT_PAGE_SIZE",
    "ENV_PREFIX",
    "ERROR_STATUSES",
    "FIRST_USER_ID",
    "FIRST_VIDEO_ID",
    "HLS_CONTENT_TYPE",
    "RequestError",
    "Services",
    "Settings",
    "Stores",
    "build_default_services",
    "build_services",
    "create_app",
    "create_default_app",
    "memory_stores",
    "redis_stores",
    "seed_synthetic_catalog",
]


def create_default_app(settings: Settings | None = None) -> Flask:
    """The app over :func:`build_default_services`, with settings from the environment.

    For ``flask --app "reelrank_example:create_default_app()" run``.
    """
    settings = settings or Settings.from_env()
    services = build_default_services(settings)
    return create_app(services, max_body_bytes=settings.max_body_bytes)
