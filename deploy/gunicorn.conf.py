"""gunicorn settings for the reels service (``gunicorn -c deploy/gunicorn.conf.py``).

Every value can be overridden by an environment variable, so the same file serves
``scripts/serve.sh`` on a laptop and the container in Kubernetes.
"""

from __future__ import annotations

import os

wsgi_app = "reelrank_example:create_default_app()"
bind = f"{os.environ.get('REELRANK_HOST', '127.0.0.1')}:{os.environ.get('REELRANK_PORT', '8000')}"
workers = int(os.environ.get("REELRANK_WORKERS", "2"))
accesslog = "-"

# --- Logging: every line gunicorn and the app write is one JSON object (level and format
# from REELRANK_LOG_LEVEL / REELRANK_LOG_FORMAT). The access line leaves out the query
# string, which can hold a cursor, and carries the request id the app answered with.
from reelrank_example import gunicorn_logconfig_dict  # noqa: E402

logconfig_dict = gunicorn_logconfig_dict()
logger_class = "reelrank_example.GunicornLogger"
