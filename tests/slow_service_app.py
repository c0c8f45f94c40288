"""The reels service plus one slow route, for the graceful-shutdown test of gunicorn.

``gunicorn -c deploy/gunicorn.conf.py "slow_service_app:create_slow_app()"``: the
service as ``create_default_app`` builds it, and ``GET /_test/slow/<seconds>``, which
touches ``$SLOW_APP_MARKERS/<seconds>`` when it starts and answers 200 after sleeping
that long, so a test knows the request is in flight before it signals the server.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flask import Flask
from reelrank_example import create_default_app


def create_slow_app() -> Flask:
    """``create_default_app()`` with the slow route added."""
    app = create_default_app()
    markers = Path(os.environ["SLOW_APP_MARKERS"])

    def slow(seconds: float) -> dict[str, float]:
        (markers / f"{seconds:g}").touch()
        time.sleep(seconds)
        return {"slept": seconds}

    app.add_url_rule("/_test/slow/<float:seconds>", "test_slow", slow)
    return app
