"""`python -m nic` (and `torchrun -m nic train ...`) runs the command line."""

import sys

from nic.cli import main

sys.exit(main())
