"""``python -m reelrank``: the same command line as the ``reelrank`` script."""

from ._cli import main

raise SystemExit(main())
