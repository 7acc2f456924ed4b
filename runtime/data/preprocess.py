"""The data block's preprocessing: ``scale`` (factor), ``standardize``, ``minmax``, in order.

``standardize per=band`` (audio features) shares one mean and std among the values of a band
(``bands``: the band of each input value, from ``features.Features.band_groups``): the
per-value moments are pooled exactly (equal counts: the band's mean is the mean of its
values' means, its variance the mean of their variances plus the spread of their means) and
saved per value as any standardisation, so the weights file and ``from_state`` do not change.

Every step is affine per feature, so the chain is one ``x * a + b`` (``Preprocessor.affine``),
fitted on the training split only and applied one batch at a time into the caller's float
buffer. Saved with the weights as ``spec()`` (the steps) and ``state()`` (the statistics);
``from_state`` rebuilds exactly the fitted transform, and ``preprocess_difference`` says how a
model file's steps differ from the saved ones.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from dlrun.errors import DataError, UsageError, WeightsError
from dlrun.runtime.data.arrays import chunk_rows, sample_size

PREPROCESS_KINDS = ("scale", "standardize", "minmax")


def _step_kind(step) -> str:
    kind = step.kind if hasattr(step, "kind") else str(step)
    if kind not in PREPROCESS_KINDS:
        raise UsageError(f"unknown preprocessing step {kind!r} (known: {', '.join(PREPROCESS_KINDS)})")
    return kind


def _step_factor(step) -> float:
    params = getattr(step, "params", {}) or {}
    if "factor" not in params:
        raise UsageError("a scale step needs its factor")
    return float(params["factor"])


_STATS = {"standardize": ("mean", "std"), "minmax": ("min", "range")}

#: the keys of ``TargetScaler.state()`` (saved as ``preprocess.target.mean`` / ``.std``)
TARGET_KEYS = ("target.mean", "target.std")


class TargetScaler:
    """``target standardize``: a regression model trains on ``(y - mean) / std`` per target
    column, ``mean`` and ``std`` fitted on the training split in float64 (a constant column
    gets std 1), and its outputs are mapped back, ``out * std + mean``, wherever they leave
    the network (predict, the metrics, the ONNX export). Saved with the weights
    (``state()``): the weights only mean something in the units they were trained in.

    >>> t = TargetScaler().fit(np.array([[100.0], [300.0]]))
    >>> t.standardize(np.array([[300.0]])).tolist(), t.restore(np.array([[-1.0]])).tolist()
    ([[1.0]], [[100.0]])
    """

    def __init__(self):
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def fit(self, y, source: str = "training data") -> "TargetScaler":
        y = np.asarray(y, dtype=np.float64)
        n = y.shape[0] if y.ndim else 0
        if n == 0:
            raise DataError(f"{source}: cannot standardize the targets of an empty training set")
        y2 = y.reshape(n, -1)
        with np.errstate(over="ignore", invalid="ignore"):
            mean = y2.mean(axis=0)
            std = np.sqrt(((y2 - mean) ** 2).mean(axis=0))
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            j = int(np.argmax(~(np.isfinite(mean) & np.isfinite(std))))
            raise DataError(f"{source}: target {j}: values too large to standardize (the statistics "
                            f"overflow float64; largest magnitude {np.abs(y2[:, j]).max():.3g})")
        self._set(mean, np.where(std <= 1e-12 * np.abs(mean), 1.0, std))
        return self

    def _set(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)

    def _need(self):
        if not self.fitted:
            raise UsageError("the target statistics of 'target standardize' are not fitted: train the "
                             "model or load its weights")

    def standardize(self, y) -> np.ndarray:
        """``(y - mean) / std`` in float64, ``y`` ``(n, targets)``."""
        self._need()
        y = np.asarray(y, dtype=np.float64)
        return (y.reshape(y.shape[0], -1) - self.mean) / self.std

    def restore(self, out: np.ndarray) -> np.ndarray:
        """``out := out * std + mean`` in place (computed in float64, rounded once to
        ``out``'s dtype); returns ``out``."""
        self._need()
        n = out.shape[0]
        o2 = out.reshape(n, -1)
        o2[...] = o2.astype(np.float64) * self.std + self.mean
        return out

    def state(self) -> dict[str, np.ndarray]:
        self._need()
        return {"target.mean": self.mean.copy(), "target.std": self.std.copy()}

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray], outputs: int | None = None) -> "TargetScaler":
        arrays = []
        for key in TARGET_KEYS:
            arr = np.asarray(state[key])
            if arr.ndim != 1 or arr.dtype.kind != "f" or (outputs is not None and arr.shape[0] != outputs):
                raise WeightsError(f"target statistics '{key}' have shape {arr.shape} and dtype {arr.dtype}; "
                                   f"expected one float per output" + (f" ({outputs})" if outputs else ""))
            if not np.isfinite(arr).all() or (key == "target.std" and not (arr > 0).all()):
                raise WeightsError(f"target statistics '{key}' hold invalid values")
            arrays.append(arr)
        t = cls()
        t._set(*arrays)
        return t


class Preprocessor:
    """The data block's preprocessing, in order: ``scale`` (factor), ``standardize``, ``minmax``.

    Every step is affine per feature, so the whole chain is one ``out = x * a + b``. The
    statistics of ``standardize`` (mean, std) and ``minmax`` (min, max - min) are those of the
    data *as it reaches the step* and are fitted on the training split only, in float64, in
    chunks (a uint8 image set is never copied as floats). Features with no spread get a unit
    divisor (they map to 0).

    >>> import numpy as np
    >>> from dlrun.dsl import ir
    >>> steps = [ir.Preprocess("scale", {"factor": 0.5}), ir.Preprocess("standardize")]
    >>> pre = Preprocessor(steps).fit(np.array([[0, 10], [4, 10]], dtype=np.uint8))
    >>> pre.transform(np.array([[0, 10], [4, 10]], dtype=np.uint8), np.float64).tolist()
    [[-1.0, 0.0], [1.0, 0.0]]
    """

    def __init__(self, steps: Iterable = (), bands: np.ndarray | None = None, target: str | None = None):
        # the data block's 'target standardize' (``TargetScaler``): fitted by ``fit_targets``
        self.target = TargetScaler() if target == "standardize" else None
        self.steps = tuple(steps)
        self.kinds = tuple(_step_kind(s) for s in self.steps)
        self.per = tuple((getattr(s, "params", {}) or {}).get("per", "feature") if k == "standardize" else None
                         for s, k in zip(self.steps, self.kinds))
        self.bands = None if bands is None else np.asarray(bands, dtype=np.int64)
        self.factors = tuple(_step_factor(s) if k == "scale" else None for s, k in zip(self.steps, self.kinds))
        self.stats: list[dict[str, np.ndarray]] = [{} for _ in self.steps]
        self.n_features: int | None = None
        self._a: np.ndarray | float = 1.0
        self._b: np.ndarray | float = 0.0
        self.fitted = not self.needs_fit
        self._set(self.stats)

    @property
    def needs_fit(self) -> bool:
        """True when a step has statistics to learn from training data."""
        return any(k in _STATS for k in self.kinds)

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, x: np.ndarray, source: str = "training data") -> "Preprocessor":
        """Learn the statistics from training inputs ``x`` ``(n, ...)``; returns self.

        ``source`` names the data in messages (values too large for the statistics).
        """
        x = np.asarray(x)
        n = int(x.shape[0]) if x.ndim else 0
        if n == 0:
            raise DataError("cannot fit preprocessing on an empty training set")
        x2 = x.reshape(n, -1)
        features = x2.shape[1]
        if not self.needs_fit:
            self.n_features = features
            self.fitted = True
            return self
        if "band" in self.per and (self.bands is None or self.bands.shape != (features,)):
            raise DataError(f"{source}: 'standardize per=band' needs audio features (the data block's "
                            f"'audio' and 'features')")
        stats = self._statistics(x2)
        for kind, st in zip(self.kinds, stats):
            for name, values in st.items():
                bad = ~np.isfinite(values)
                if bad.any():
                    j = int(np.argmax(bad))
                    raise DataError(
                        f"{source}: feature {j}: values too large to {kind} (the {name} overflows "
                        f"float64; largest magnitude {np.abs(x2[:, j]).max():.3g})"
                    )
        self._set(stats)
        self.n_features = features
        self.fitted = True
        return self

    @np.errstate(over="ignore", invalid="ignore")
    def _statistics(self, x2: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Per-step statistics of ``x2`` ``(n, features)`` in one chunked float64 pass.

        Overflow (values near the float64 limit) leaves non-finite statistics, which
        ``fit`` reports.
        """
        n, features = x2.shape
        need_moments = "standardize" in self.kinds
        need_range = "minmax" in self.kinds
        mean = np.zeros(features)
        m2 = np.zeros(features)
        lo = np.full(features, np.inf)
        hi = np.full(features, -np.inf)
        count = 0
        step = chunk_rows(features * 8)
        for s in range(0, n, step):
            chunk = x2[s : s + step].astype(np.float64)
            k = chunk.shape[0]
            if need_moments:
                # Chan et al.: merge the chunk's mean and sum of squared deviations
                c_mean = chunk.mean(axis=0)
                c_m2 = ((chunk - c_mean) ** 2).sum(axis=0)
                delta = c_mean - mean
                total = count + k
                mean += delta * (k / total)
                m2 += c_m2 + delta**2 * (count * k / total)
            if need_range:
                np.minimum(lo, chunk.min(axis=0), out=lo)
                np.maximum(hi, chunk.max(axis=0), out=hi)
            count += k
        std = np.sqrt(m2 / count)
        if "band" in self.per:
            sizes = np.bincount(self.bands).astype(np.float64)
            b_mean = np.bincount(self.bands, mean) / sizes
            b_var = np.bincount(self.bands, m2 / count + (mean - b_mean[self.bands]) ** 2) / sizes
            band_mean, band_std = b_mean[self.bands], np.sqrt(b_var)[self.bands]
        # walk the chain: statistics of the data as each step sees it
        a = np.ones(features)
        b = np.zeros(features)
        stats: list[dict[str, np.ndarray]] = []
        for kind, factor, per in zip(self.kinds, self.factors, self.per):
            if kind == "scale":
                a, b = a * factor, b * factor
                stats.append({})
            elif kind == "standardize":
                # per band: the steps before it are scales and standardisations (the checker
                # refuses minmax first), so a and b are constant over a band and the pooled
                # moments map through them
                mu, sigma = (band_mean, band_std) if per == "band" else (mean, std)
                m = a * mu + b
                sd = np.abs(a) * sigma
                sd = np.where(sd <= 1e-12 * np.abs(m), 1.0, sd)
                stats.append({"mean": m, "std": sd})
                a, b = a / sd, (b - m) / sd
            else:
                t_lo = np.where(a >= 0, a * lo + b, a * hi + b)
                t_hi = np.where(a >= 0, a * hi + b, a * lo + b)
                rng = t_hi - t_lo
                rng = np.where(rng <= 1e-12 * np.maximum(np.abs(t_lo), np.abs(t_hi)), 1.0, rng)
                stats.append({"min": t_lo, "range": rng})
                a, b = a / rng, (b - t_lo) / rng
        return stats

    def _set(self, stats: list[dict[str, np.ndarray]]) -> None:
        """Compose the chain from per-step statistics (the one path for fit and from_state)."""
        a: np.ndarray | float = 1.0
        b: np.ndarray | float = 0.0
        for kind, factor, st in zip(self.kinds, self.factors, stats):
            if kind == "scale":
                a, b = a * factor, b * factor
            elif kind == "standardize" and st:
                a, b = a / st["std"], (b - st["mean"]) / st["std"]
            elif kind == "minmax" and st:
                a, b = a / st["range"], (b - st["min"]) / st["range"]
        self.stats = stats
        self._a = np.asarray(a, dtype=np.float64)
        self._b = np.asarray(b, dtype=np.float64)

    def fit_targets(self, y, source: str = "training data") -> "Preprocessor":
        """Fit ``target standardize`` on the training targets ``y`` (nothing without it, or
        when already fitted: the statistics are learnt once); returns self."""
        if self.target is not None and not self.target.fitted and y is not None:
            self.target.fit(y, source)
        return self

    @property
    def target_std(self) -> np.ndarray | None:
        """Each target's std when the targets are standardized (the metrics' scale), else None."""
        return None if self.target is None or not self.target.fitted else self.target.std

    # -- applying -----------------------------------------------------------------------------
    @property
    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)``, float64 scalars or per-feature ``(features,)``: ``apply`` computes
        ``x * a + b`` (for kernels that convert raw batches themselves)."""
        return self._a, self._b

    def apply(self, x_batch: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out := x_batch * a + b``, flattened per sample; ``out`` float32/float64 ``(b, features)``.

        Computed in float64 (a product, then a sum) and rounded once to ``out``'s dtype.

        ``x_batch`` may be uint8 (converted on the fly, no float copy of it is made).
        """
        if not self.fitted:
            raise UsageError("preprocessing statistics are not fitted: train the model or load its weights")
        x_batch = np.asarray(x_batch)
        b = x_batch.shape[0]
        x2 = x_batch.reshape(b, -1)
        if out.shape != x2.shape:
            raise UsageError(f"preprocess output buffer has shape {out.shape}, expected {x2.shape}")
        if self.n_features is not None and x2.shape[1] != self.n_features:
            raise DataError(
                f"inputs have {x2.shape[1]} features per sample; the preprocessing was fitted on "
                f"{self.n_features}"
            )
        if self._a.ndim == 0 and self._a == 1.0 and self._b.ndim == 0 and self._b == 0.0:
            np.copyto(out, x2, casting="same_kind")
            return out
        has_b = self._b.ndim or self._b != 0.0
        if out.dtype == np.float64 or not has_b:
            np.multiply(x2, self._a, out=out, dtype=np.float64, casting="same_kind")
            if has_b:
                np.add(out, self._b, out=out)
            return out
        # x * a + b in float64, rounded once to out's dtype: rounding x * a first loses the
        # cancellation standardize relies on (a constant 1e20 became 2e12, not 0).
        # kernels/chain.pyx's take_affine computes the same, bit for bit.
        step = chunk_rows(x2.shape[1] * 8)
        tmp = np.empty((min(step, b), x2.shape[1]), np.float64)
        for s in range(0, b, step):
            t = tmp[: min(step, b - s)]
            np.multiply(x2[s : s + step], self._a, out=t, dtype=np.float64)
            np.add(t, self._b, out=t)
            np.copyto(out[s : s + step], t, casting="same_kind")
        return out

    def transform(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        """A new ``(n, features)`` array of ``dtype`` holding the preprocessed ``x``."""
        x = np.asarray(x)
        n = x.shape[0]
        out = np.empty((n, sample_size(x.shape[1:])), dtype=dtype)
        return self.apply(x, out)

    # -- saving -------------------------------------------------------------------------------
    def spec(self) -> list[dict]:
        """The steps as saved with the weights: ``[{"kind": "scale", "factor": 0.0625}, {"kind": "standardize"}]``."""
        return [{"kind": k, "factor": f} if k == "scale" else {"kind": k, "per": p} if p == "band" else {"kind": k}
                for k, f, p in zip(self.kinds, self.factors, self.per)]

    def state(self) -> dict[str, np.ndarray]:
        """The fitted statistics as named float64 arrays (keys ``step{i}.{kind}.{stat}``, and
        ``target.mean``/``target.std`` of a fitted ``target standardize``)."""
        if not self.fitted:
            raise UsageError("preprocessing statistics are not fitted")
        out = {} if self.target is None or not self.target.fitted else self.target.state()
        for i, (kind, st) in enumerate(zip(self.kinds, self.stats)):
            for name in _STATS.get(kind, ()):
                out[f"step{i}.{kind}.{name}"] = np.array(st[name], dtype=np.float64)
        return out

    @classmethod
    def from_state(cls, steps: Iterable, state: Mapping[str, np.ndarray], target: str | None = None,
                   outputs: int | None = None) -> "Preprocessor":
        """A preprocessor for ``steps`` (and the data block's ``target``) with statistics from
        ``state()``; exactly the fitted transform. ``outputs``: the model's output count (the
        target statistics have one value each)."""
        pre = cls(steps, target=target)
        saved_target = [k for k in TARGET_KEYS if k in state]
        if pre.target is not None:
            if len(saved_target) != len(TARGET_KEYS):
                raise WeightsError(
                    "the data block standardizes the targets ('target standardize'), but the weights hold "
                    "no target statistics: they were trained on the targets as they are (their outputs "
                    "are in the targets' units); remove 'target standardize', or train again")
            pre.target = TargetScaler.from_state(state, outputs)
        elif saved_target:
            raise WeightsError(
                "the weights were trained on standardized targets ('target standardize': their outputs "
                "are in standard deviations from the training mean), but the data block does not "
                "standardize them; add 'target standardize' to the data block")
        state = {k: v for k, v in state.items() if k not in TARGET_KEYS}
        expected = {f"step{i}.{k}.{s}" for i, k in enumerate(pre.kinds) for s in _STATS.get(k, ())}
        extra = sorted(set(state) - expected)
        if extra:
            raise WeightsError(
                f"preprocessing statistics {', '.join(extra)} do not match the model's preprocessing "
                f"({', '.join(pre.kinds) or 'none'})"
            )
        stats: list[dict[str, np.ndarray]] = []
        features = None
        for i, kind in enumerate(pre.kinds):
            st = {}
            for name in _STATS.get(kind, ()):
                key = f"step{i}.{kind}.{name}"
                if key not in state:
                    raise WeightsError(f"missing preprocessing statistics '{key}' ({kind} step {i + 1})")
                arr = np.asarray(state[key])
                if arr.ndim != 1 or arr.dtype.kind != "f" or (features is not None and arr.shape[0] != features):
                    raise WeightsError(
                        f"preprocessing statistics '{key}' have shape {arr.shape} and dtype {arr.dtype}; "
                        f"expected one float per feature"
                    )
                if not np.isfinite(arr).all() or (name in ("std", "range") and not (arr > 0).all()):
                    raise WeightsError(f"preprocessing statistics '{key}' hold invalid values")
                features = arr.shape[0]
                st[name] = arr.astype(np.float64)
            stats.append(st)
        pre._set(stats)
        pre.n_features = features
        pre.fitted = True
        return pre


def _step_text(step: Mapping) -> str:
    if step.get("kind") == "scale":
        return f"scale {step['factor']!r}"
    return str(step.get("kind")) + (" per=band" if step.get("per") == "band" else "")


def preprocess_difference(saved: Sequence[Mapping], steps: Sequence) -> str | None:
    """How the data block's preprocessing ``steps`` differ from ``saved`` (the ``spec()`` the
    weights were trained with), or None when they are the same steps in the same order with
    the same factors.

    >>> from dlrun.dsl import ir
    >>> preprocess_difference([{"kind": "scale", "factor": 0.0625}], [ir.Preprocess("scale", {"factor": 1 / 255})])
    'step 1 is scale 0.00392156862745098 in the model file, scale 0.0625 in the weights'
    """
    now = Preprocessor(steps).spec()
    saved = [dict(s) for s in saved]

    def line(i):
        pos = getattr(steps[i], "pos", None)
        return f" (line {pos.line})" if pos is not None and pos.line else ""

    for i, (old, new) in enumerate(zip(saved, now)):
        if old != new:
            return f"step {i + 1} is {_step_text(new)}{line(i)} in the model file, {_step_text(old)} in the weights"
    if len(now) > len(saved):
        i = len(saved)
        return f"the model file adds step {i + 1}, {_step_text(now[i])}{line(i)}, which the weights were not trained with"
    if len(saved) > len(now):
        i = len(now)
        return f"the weights were trained with a step {i + 1}, {_step_text(saved[i])}, which the model file lacks"
    return None
