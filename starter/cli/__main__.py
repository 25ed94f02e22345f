"""``python -m starter.cli``: the same as the ``overtime`` console script."""

import sys

from starter.cli import main

sys.exit(main())
