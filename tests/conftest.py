import os
import sys

# Subprocesses (python -m dlrun) must import the installed package, not this checkout:
# a Python started in the checkout puts it, and its dlrun/ folder, first on sys.path.
os.environ["PYTHONSAFEPATH"] = "1"

# Make tests/helpers.py importable; the package itself always comes from site-packages.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
