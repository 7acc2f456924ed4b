"""scikit-learn estimators over a ``.net`` model file: ``NetClassifier`` and ``NetRegressor``.

    from sklearn.datasets import load_iris
    from sklearn.model_selection import cross_val_score
    from dlrun.sklearn import NetClassifier

    X, y = load_iris(return_X_y=True)
    scores = cross_val_score(NetClassifier("models/iris.net", epochs=20), X, y, cv=5)

``net`` is the path of a ``.net`` file or the file's text (a string with a line break or a
``{`` is text). The estimator's other parameters are the file's settings that ``dlrun train``
overrides, under the file's own names: ``lr`` (the optimizer's ``lr=``), ``epochs`` and
``batch`` (``train epochs=`` / ``batch=``) and ``seed`` (``train seed=``: initialisation,
shuffling, dropout and the held-out ``validation F`` of the data block). None keeps the
file's value. ``fit`` reads the file again and trains a new model every call (a refit never
continues from the weights of the last one); the file fixes the input size and the number
of outputs, so ``fit`` refuses data that do not match them instead of resizing the network.

Needs scikit-learn: ``pip install 'dlrun[sklearn]'``.
"""
from __future__ import annotations

import os

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
except ImportError as _err:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "dlrun.sklearn needs scikit-learn (not installed): pip install 'dlrun[sklearn]' "
        "(or pip install 'scikit-learn>=1.3')") from _err

import numpy as np

from dlrun.errors import DataMismatchError, UsageError

try:
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn < 1.6: the estimator's own method
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

__all__ = ["NetClassifier", "NetRegressor"]

# inputs the network reads as they are (anything else is converted to float64 first)
_DTYPES = (np.float64, np.float32)


def _is_text(net) -> bool:
    """Whether ``net`` is the text of a model file rather than its path."""
    return isinstance(net, str) and ("\n" in net or "{" in net)


class _NetEstimator(BaseEstimator):
    """What both estimators share: the file, its overrides, input checks, the fitted model."""

    #: 'classifier' or 'regressor': the kind of model file this estimator takes
    _kind = ""

    def __init__(self, net=None, *, lr=None, epochs=None, batch=None, seed=None):
        # scikit-learn's rule: the constructor stores the parameters, fit() checks them (net
        # has a default so that the estimator is constructible without arguments, as sklearn's are)
        self.net = net
        self.lr = lr
        self.epochs = epochs
        self.batch = batch
        self.seed = seed

    # -- the model file ------------------------------------------------------------------
    def _where(self) -> str:
        return "<the net text>" if _is_text(self.net) else os.fspath(self.net)

    def _load(self):
        """A new ``dlrun.Model`` from ``net`` with the overrides applied as ``dlrun train``
        applies ``--lr`` and ``--seed`` (``epochs``/``batch`` go to ``fit``)."""
        import dlrun

        net = self.net
        if isinstance(net, bytes):
            raise UsageError(f"{type(self).__name__}: net must be a path or the text of a .net file "
                             "(str), got bytes: decode it first")
        if not isinstance(net, (str, os.PathLike)):
            raise UsageError(f"{type(self).__name__}: net must be the path of a .net file or its text, "
                             f"got {type(net).__name__}")
        model = (dlrun.loads(net, seed=self.seed, lr=self.lr) if _is_text(net)
                 else dlrun.load(net, seed=self.seed, lr=self.lr))
        task = model.task
        if (task == "regression") != (self._kind == "regressor"):
            other = "NetRegressor" if task == "regression" else "NetClassifier"
            raise UsageError(f"{self._where()}: {type(self).__name__} needs a {self._kind} model file, but "
                             f"{model.name}'s loss {model.ir.loss.name} makes it a {task} model: use {other}")
        if model.ir.data is not None and model.ir.data.text is not None:
            raise UsageError(f"{self._where()}: {model.name} reads texts (data block 'text "
                             f"{model.ir.data.text}'); {type(self).__name__} takes numeric feature arrays")
        return model

    def _check_features(self, model, X) -> None:
        """X's columns against the file's ``input``: a different count is refused (never
        reshaped or padded), naming both sizes."""
        features = int(np.prod(model.input_shape, dtype=np.int64))
        if X.shape[1] != features:
            shape = " x ".join(str(d) for d in model.input_shape)
            raise DataMismatchError(f"{self._where()}: X has {X.shape[1]} feature(s) per sample, but {model.name} "
                            f"reads {features} ('input {shape}'): give X {features} columns, or change "
                            f"the model file's input")

    def _validate_X(self, X, reset):
        return _validate_data(self, X, reset=reset, dtype=_DTYPES)

    def _train(self, model, X, y):
        model.fit(X, y, epochs=self.epochs, batch_size=self.batch, seed=self.seed)
        self.model_ = model
        self.history_ = model.history
        return self

    def _outputs(self, X):
        check_is_fitted(self, "model_")
        X = self._validate_X(X, reset=False)
        # float64 as scikit-learn's estimators return (a float32 network's outputs widen exactly)
        return self.model_.predict(X).astype(np.float64)

    # -- tags: what scikit-learn's checks may expect -------------------------------------
    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class NetClassifier(ClassifierMixin, _NetEstimator):
    """A classifier ``.net`` file (loss ``cross_entropy``: ``dense K softmax``, or
    ``binary_cross_entropy``: ``dense 1 sigmoid``) as a scikit-learn classifier.

    ``fit(X, y)``: ``y`` holds any labels scikit-learn allows (strings, integers that are not
    0..k-1); ``classes_`` are the distinct labels in sorted order, trained as class indices
    0..k-1 and mapped back by ``predict``. The file's outputs must be as many as the classes
    in ``y`` (two for a ``dense 1 sigmoid`` model), else ``DataMismatchError``. Fitted attributes:
    ``classes_``, ``n_features_in_``, ``model_`` (the trained ``dlrun.Model``), ``history_``.
    """

    _kind = "classifier"

    def fit(self, X, y):
        model = self._load()
        X, y = _validate_data(self, X, y, dtype=_DTYPES)
        check_classification_targets(y)
        self._check_features(model, X)
        classes, indices = np.unique(y, return_inverse=True)
        outputs = int(np.prod(model.output_shape, dtype=np.int64))
        expected = 2 if model.task == "binary" else outputs
        if len(classes) != expected:
            what = ("a 'dense 1 sigmoid' output (binary_cross_entropy) tells two classes apart"
                    if model.task == "binary" else f"its output layer has {outputs} units, one per class")
            shown = ", ".join(map(str, classes[:10])) + (", ..." if len(classes) > 10 else "")
            raise DataMismatchError(f"{self._where()}: y holds {len(classes)} class(es) ({shown}), but {model.name} "
                            f"has {expected}: {what}; the model file fixes the number of classes (it is "
                            f"not resized to the data): write the output layer for {len(classes)} classes")
        self.classes_ = classes
        return self._train(model, X, indices.astype(np.int64))

    def predict_proba(self, X):
        """Class probabilities (n, len(classes_)), columns in the order of ``classes_``."""
        p = self._outputs(X)
        if self.model_.task == "binary":  # the network gives P(class 1) alone
            p = np.hstack([1 - p, p])
        return p

    def predict(self, X):
        """The most probable label of each row (from ``classes_``)."""
        from dlrun.runtime.losses import class_indices

        p = self._outputs(X)   # first: an unfitted estimator raises NotFittedError
        return self.classes_[class_indices(p, self.model_.task)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True  # few epochs in a check run: no score thresholds
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"poor_score": True, "allow_nan": False}


class NetRegressor(RegressorMixin, _NetEstimator):
    """A regression ``.net`` file (loss ``mse``, ``mae``, ``huber``, ...) as a scikit-learn
    regressor. ``y`` of shape (n,) for a one-output model (``predict`` then returns (n,)),
    or (n, outputs). Fitted attributes: ``n_features_in_``, ``model_``, ``history_``."""

    _kind = "regressor"

    def fit(self, X, y):
        model = self._load()
        X, y = _validate_data(self, X, y, dtype=_DTYPES, y_numeric=True, multi_output=True)
        self._check_features(model, X)
        outputs = int(np.prod(model.output_shape, dtype=np.int64))
        given = 1 if y.ndim == 1 else y.shape[1]
        if given != outputs:
            raise DataMismatchError(f"{self._where()}: y has {given} target(s) per sample, but {model.name} has "
                            f"{outputs} output(s); give y {outputs} column(s), or change the output layer")
        self._one_target = y.ndim == 1
        return self._train(model, X, y.reshape(len(y), -1))

    def predict(self, X):
        """Predicted values: (n,) when fitted on a 1-D ``y``, else (n, outputs)."""
        out = self._outputs(X)
        return out[:, 0] if self._one_target else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # as many targets as the file has outputs
        tags.regressor_tags.poor_score = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"poor_score": True, "allow_nan": False, "multioutput": True}
