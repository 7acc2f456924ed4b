"""dlrun: a minimal, fast deep-learning framework with a declarative model language.

    >>> import dlrun
    >>> dlrun.__version__ >= "0.1"
    True

The heavy parts (kernels, scipy) are imported only when a model is built, so that
``dlrun check`` and ``import dlrun.dsl`` stay fast.
"""
import os as _os

# In a source checkout this folder sits beside dsl/, kernels/ and runtime/ (setup.py maps
# them into the package when it installs). When the checkout itself is on sys.path (Python
# started in it), the package is this folder: let its sub-packages resolve to the siblings,
# as an editable install does. The kernels then come from an in-place build.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "dsl")) \
        and _os.path.isfile(_os.path.join(_root, "dsl", "net.lark")):
    __path__.append(_root)  # noqa: F821 (the package's own __path__)
del _root

from dlrun._version import __version__  # noqa: E402
from dlrun.errors import (
    DataError,
    DataWarning,
    DlrunError,
    DslError,
    ModelWarning,
    TrainingError,
    UsageError,
    WeightsError,
)

__all__ = [
    "__version__",
    "load",
    "loads",
    "Model",
    "History",
    "DlrunError",
    "DslError",
    "DataError",
    "WeightsError",
    "UsageError",
    "TrainingError",
    "ModelWarning",
    "DataWarning",
]

_LAZY = {"load": "dlrun.runtime.api", "loads": "dlrun.runtime.api",
         "Model": "dlrun.runtime.api", "History": "dlrun.runtime.api"}


def __getattr__(name):
    # PEP 562: import the runtime (and with it the kernels and scipy) on first use only.
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dlrun' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
