"""``python -m unroll`` is the ``unroll`` command (and what ``torchrun -m unroll`` starts)."""

import sys

from unroll.cli import main

sys.exit(main())
