import os
import sys

# Make tests/helpers.py importable; the package itself always comes from site-packages.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
