"""dlrun: a minimal, fast deep-learning framework with a declarative model language.

    >>> import dlrun
    >>> dlrun.__version__ >= "0.1"
    True

The heavy parts (kernels, scipy) are imported only when a model is built, so that
``dlrun check`` and ``import dlrun.dsl`` stay fast.
"""
from dlrun._version import __version__
from dlrun.errors import (
    DataError,
    DataMismatchError,
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
    "blas_threads",
    "DlrunError",
    "DslError",
    "DataError",
    "DataMismatchError",
    "WeightsError",
    "UsageError",
    "TrainingError",
    "ModelWarning",
    "DataWarning",
]

_LAZY = {"load": "dlrun.runtime.api", "loads": "dlrun.runtime.api",
         "Model": "dlrun.runtime.api", "History": "dlrun.runtime.api",
         "blas_threads": "dlrun.runtime.threads"}


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
