"""``python -m deltalearn.cli``: the ``deltalearn`` command (for ``torchrun -m deltalearn.cli``)."""

import sys

from . import main

sys.exit(main())
