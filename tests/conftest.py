"""What every test module shares: the reels service package is importable from its tree.

The service (``examples/flask_app``) is not installed by the test set-up; its tests
import it from the source tree, whichever module the run starts with.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SERVICE = str(Path(__file__).resolve().parents[1] / "examples" / "flask_app")
if _SERVICE not in sys.path:
    sys.path.insert(0, _SERVICE)
