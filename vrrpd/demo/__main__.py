from __future__ import annotations

import sys

from vrrpd.demo.script import main

sys.exit(main())
