from __future__ import annotations

import sys

from vrrpd.cli import main

sys.exit(main())
