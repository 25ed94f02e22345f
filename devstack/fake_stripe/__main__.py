"""``python -m devstack.fake_stripe``: see ``cli.py``."""

import sys

from devstack.fake_stripe.cli import main

sys.exit(main())
