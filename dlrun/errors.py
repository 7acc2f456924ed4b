"""The one exception hierarchy of dlrun.

Every message says what went wrong, the value received, what was expected and where.
The CLI prints ``str(error)`` without a traceback and exits with ``error.exit_code``.

    DlrunError            base class; exit code 2 (bad input)
    ├── DslError          a model file does not parse or check; carries diagnostics
    ├── DataError         a data file is missing, malformed or does not fit the model
    │   └── DataMismatchError  arrays given to ``dlrun.sklearn`` that do not fit the model
    │                     file (also a ValueError, as scikit-learn expects of bad data)
    ├── WeightsError      a weights/checkpoint file is missing, damaged or does not fit
    ├── UsageError        bad command-line or API arguments
    └── TrainingError     a run failed (e.g. non-finite loss); exit code 1

    ModelWarning          (a UserWarning) a checker warning about a model file, issued by
                          ``dlrun.load`` / ``dlrun.loads``
    DataWarning           (a UserWarning) data that is used, but not as written: columns
                          matched by name in another order, a header taken from a labels
                          file, a saved split that the file's seed does not re-draw
"""


class DlrunError(Exception):
    """Base class of every error dlrun raises on purpose."""

    exit_code = 2


class DslError(DlrunError):
    """A model file failed to parse or check.

    ``diagnostics`` is the list of every problem found, in source order; each has
    ``severity``, ``path``, ``line``, ``col``, ``message`` and ``format()``.
    """

    def __init__(self, diagnostics, message=None):
        self.diagnostics = list(diagnostics)
        if message is None:
            message = "\n".join(d.format() for d in self.diagnostics)
        super().__init__(message)


class DataError(DlrunError):
    """A data file is missing, unreadable, malformed or does not fit the model.

    ``statement``: the data-block statement the problem is about when it is not the file's
    own (``'label'`` for a label column the file lacks), so ``dlrun check --data`` can point
    at it; None otherwise.
    """

    def __init__(self, message, *, statement=None):
        super().__init__(message)
        self.statement = statement


class DataMismatchError(DataError, ValueError):
    """Arrays given to a ``dlrun.sklearn`` estimator that do not fit its model file: X's
    columns against the file's ``input``, y's classes or targets against its outputs. Also a
    ``ValueError``: scikit-learn's tools and checks expect bad data to raise one."""


class WeightsError(DlrunError):
    """A weights or checkpoint file is missing, damaged, or does not fit the model."""


class UsageError(DlrunError):
    """Arguments given to the CLI or the Python API are invalid."""


class TrainingError(DlrunError):
    """Training could not go on (for example a non-finite loss)."""

    exit_code = 1


class ModelWarning(UserWarning):
    """A checker warning about a model (e.g. softmax feeding ``mse``): the model works, but
    probably not as meant. The message is ``path:line:col: warning: ...``."""


class DataWarning(UserWarning):
    """Data read as the model needs it but not as written (e.g. CSV columns in another
    order, matched by name). The message starts with the file it is about."""
