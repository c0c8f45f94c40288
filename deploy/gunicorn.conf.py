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
