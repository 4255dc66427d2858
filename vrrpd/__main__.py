from __future__ import annotations

import sys

from vrrpd.fast_start import early

early(sys.argv[1:])  # first: replay the cached IPVS table before the heavy imports

from vrrpd.cli import main  # noqa: E402

sys.exit(main())
