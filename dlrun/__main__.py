"""``python -m dlrun`` is the same as the ``dlrun`` command."""
import sys

from dlrun.runtime.cli import main

sys.exit(main())
