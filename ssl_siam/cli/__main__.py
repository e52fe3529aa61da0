"""``python -m ssl_siam.cli``."""

import sys

from ssl_siam.cli import main

sys.exit(main())
