"""``python -m reelrank_example``: serve the example on 127.0.0.1 with Flask's server."""

from __future__ import annotations

from . import Settings, build_default_services, create_app


def main() -> None:
    """Seed the services from environment settings and serve until interrupted."""
    settings = Settings.from_env()
    services = build_default_services(settings)
    app = create_app(services, max_body_bytes=settings.max_body_bytes)
    print(
        f"reelrank example: {settings.videos} videos, {settings.users} users "
        f"(ids from 100001), serving on http://{settings.host}:{settings.port}",
        flush=True,
    )
    try:
        app.run(host=settings.host, port=settings.port)
    finally:
        services.close()


if __name__ == "__main__":
    main()
