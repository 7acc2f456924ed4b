"""Every name of the ``.net`` language, defined once: keywords, activations, initialisers,
metrics, settings and all their parameters (type, range, default). Layer kinds, losses and
optimizers are described one spec each, in ``dsl/layers/``, ``dsl/losses.py`` and
``dsl/optimizers.py``; ``all_names`` gathers every name.

The checker validates against these tables and specs, the formatter and
``docs/language.md`` follow them, and the runtime maps DSL names to kernels through them.
A spelling exists in one place and nowhere else.

Parameter types:
    int, float       numbers (an int parameter accepts a whole float such as ``128/2``)
    bool             ``true`` / ``false`` (a bare flag means true)
    name             a bare word from ``choices``
    str              a quoted string
    names            a list of words from ``choices``: ``[accuracy, mae]``
    ints             a list of whole numbers, each in the range: ``[30, 60]``
    weights          a word from ``choices`` (``balanced``) or a list of numbers in the range,
                     not all 0: ``[1, 2.5, 1]``
    activation       an activation name, optionally with parameters: ``leaky_relu(alpha=0.1)``
    shape            a feature count ``64`` or a shape ``28x28`` / ``1x28x28``
    pair             a window extent or step: ``3`` (both axes) or ``3x5`` (height x width)
    padding          ``same``, ``valid``, or a count per side: ``1`` or ``1x2`` (height x width)
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

from dlrun.dsl.dataformats import DATA_FORMATS  # noqa: F401  (one suffix rule, in dataformats.py)

REQUIRED = object()  # default of a parameter that must be given


class Param(NamedTuple):
    """One parameter: ``name``, ``type``, ``default`` (``REQUIRED`` if it must be given),
    an optional range ``lo``..``hi`` (``lo_open``/``hi_open`` make an end exclusive),
    ``choices`` for names, ``nullable`` when None is a meaningful default, and ``doc``."""

    name: str
    type: str
    default: Any = REQUIRED
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def range_text(self) -> str:
        """'in [0, 1)', '> 0', '>= 1' ... ('' without a range)."""
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            return f"in {'(' if self.lo_open else '['}{_num(lo)}, {_num(hi)}{')' if self.hi_open else ']'}"
        if lo is not None:
            return f"{'>' if self.lo_open else '>='} {_num(lo)}"
        if hi is not None:
            return f"{'<' if self.hi_open else '<='} {_num(hi)}"
        return ""

    def in_range(self, value) -> bool:
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return False
        return True


def _num(x) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


#: Largest integer accepted for counts and sizes (units, shape dimensions, epochs, ...).
MAX_INT = 2**31 - 1
#: Limit on the number of layers after ``repeat`` expansion.
MAX_LAYERS = 100_000
#: The format version this dlrun reads and writes (``dlrun 1``).
FORMAT_VERSION = 1
#: Words of the grammar (``dlrun 1``, ``model NAME``, ``let NAME``, ``as NAME``): never names.
RESERVED_WORDS = ("dlrun", "model", "let", "as")

#: Other frameworks' spellings of a parameter -> dlrun's, for "did you mean" hints only
#: (the file must use dlrun's name). A hint is given only where the target parameter exists.
PARAM_ALIASES = {
    "learning_rate": "lr", "learningrate": "lr",
    "epsilon": "eps",
    "beta_1": "beta1", "beta_2": "beta2",
    "alpha": "rho",  # PyTorch's RMSprop
    "negative_slope": "alpha",  # PyTorch's LeakyReLU
    "clipnorm": "clip_norm", "max_norm": "clip_norm", "max_grad_norm": "clip_norm",
    "out_features": "units", "output_dim": "units", "num_units": "units", "hidden_size": "units",
    "p": "rate", "dropout": "rate", "dropout_rate": "rate", "drop_rate": "rate", "drop_prob": "rate",
    "kernel_initializer": "init", "initializer": "init", "weight_init": "init",
    "use_bias": "bias",
    "batch_size": "batch", "num_epochs": "epochs", "n_epochs": "epochs", "max_epochs": "epochs",
    "random_state": "seed", "random_seed": "seed",
    "restore_best_weights": "restore_best",
}

# ---------------------------------------------------------------------------- activations
#: name -> its parameters. Order is the documented order.
ACTIVATIONS: dict[str, tuple[Param, ...]] = {
    "linear": (),
    "relu": (),
    "leaky_relu": (Param("alpha", "float", 0.01, lo=0.0, doc="slope for x < 0"),),
    "elu": (Param("alpha", "float", 1.0, lo=0.0, lo_open=True, doc="saturation value for x -> -inf"),),
    "sigmoid": (),
    "tanh": (),
    "softplus": (),
    "gelu": (),
    "swish": (),
    "softmax": (),
}
#: Activations that act on a whole feature vector (need a flat input).
VECTOR_ACTIVATIONS = ("softmax",)
#: Forward cost per element, for the FLOPs column of ``dlrun summary`` (rough, documented).
ACTIVATION_FLOPS = {"linear": 0, "relu": 1, "leaky_relu": 2, "elu": 4, "sigmoid": 4, "tanh": 4,
                    "softplus": 4, "gelu": 8, "swish": 5, "softmax": 5}

# ---------------------------------------------------------------------------- initialisers
INITS = ("he_normal", "he_uniform", "xavier_normal", "xavier_uniform")
#: Short spellings accepted in files, canonicalised by the checker.
INIT_ALIASES = {"he": "he_normal", "xavier": "xavier_uniform"}

# ---------------------------------------------------------------------------- layers
# Layer kinds and their parameters are described one spec per kind in dsl/layers/.

# ---------------------------------------------------------------------------- losses
# Losses (parameters, task, fused activation, label and output rules) are described one
# spec per loss in dsl/losses.py.

# ---------------------------------------------------------------------------- optimizers
# Optimizers (hyperparameters, the IR's filled parameters) are described one spec per
# optimizer in dsl/optimizers.py.

# ---------------------------------------------------------------------------- settings
METRICS = ("accuracy", "f1", "precision", "recall", "mae", "mse", "r2")
#: Metrics that need class labels (f1, precision, recall: macro averages over the classes).
CLASSIFICATION_METRICS = ("accuracy", "f1", "precision", "recall")
#: Metrics of regression outputs only.
REGRESSION_METRICS = ("r2",)
#: Metrics whose best value is the largest.
MAXIMIZED_METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS
DTYPES = ("float32", "float64")

REGULARIZE: tuple[Param, ...] = (
    Param("l1", "float", 0.0, lo=0.0, doc="penalty l1*sum|w| on every dense weight matrix"),
    Param("l2", "float", 0.0, lo=0.0, doc="penalty l2/2*sum w^2 on every dense weight matrix"),
)

TRAIN: tuple[Param, ...] = (
    Param("epochs", "int", 10, lo=1, hi=MAX_INT, doc="passes over the training data"),
    Param("batch", "int", 32, lo=1, hi=MAX_INT, doc="samples per gradient step (Train.batch_size)"),
    Param("seed", "int", 0, lo=0, hi=2**63 - 1, doc="seed of every random choice (init, shuffle, dropout)"),
    Param("shuffle", "bool", True, doc="shuffle the training samples every epoch"),
    Param("dtype", "name", "float32", choices=DTYPES, doc="floating-point type of the whole run"),
    Param("metrics", "names", (), choices=METRICS, doc="reported besides the loss"),
)


def monitor_choices() -> tuple[str, ...]:
    names = ("loss",) + METRICS
    return tuple(f"val_{n}" for n in names) + names


#: Monitors whose best value is the largest (early_stopping mode=auto picks max).
MAXIMIZED_MONITORS = tuple(m for m in monitor_choices() if m.removeprefix("val_") in MAXIMIZED_METRICS)

EARLY_STOPPING: tuple[Param, ...] = (
    Param("monitor", "name", "val_loss", choices=monitor_choices(), doc="quantity watched after every epoch"),
    Param("mode", "name", "auto", choices=("auto", "min", "max"),
          doc="min: lower is better; max: higher is better; auto: max for accuracy, f1, precision, "
              "recall and r2, min otherwise"),
    Param("patience", "int", 5, lo=0, hi=MAX_INT, doc="epochs without improvement before stopping"),
    Param("min_delta", "float", 0.0, lo=0.0, doc="smallest change that counts as an improvement"),
    Param("restore_best", "bool", True, doc="restore the best weights when training stops"),
)

# ---------------------------------------------------------------------------- data
# DATA_FORMATS, the data file formats as listed in messages: dsl/dataformats.py (imported above)

SOURCE: tuple[Param, ...] = (
    Param("path", "str", doc="data file, relative to the model file"),
    Param("labels", "str", None, nullable=True, doc="separate label file (for .npy, .npz and IDX inputs)"),
    Param("x", "name", "x", doc="inputs array inside an .npz (Source.x_key)"),
    Param("y", "name", "y", doc="labels array inside an .npz (Source.y_key)"),
)

#: data block statement -> parameters.
#: Upper limit of ``tokens max_length=`` and ``vocab=`` (far above any real text model; stops typos).
MAX_TOKENS = 10_000_000
#: ``tokens``: how a text column becomes a row of token ids (``runtime/data/tokens.py``)
TOKENS: tuple[Param, ...] = (
    Param("unit", "name", "chars", choices=("chars", "words"),
          doc="a token is one character, or one word (a run of letters and digits) or punctuation mark"),
    Param("lowercase", "bool", False, doc="texts are lower-cased before they are split into tokens"),
    Param("max_length", "int", None, lo=1, hi=MAX_TOKENS, nullable=True,
          doc="tokens per sample, padded or truncated (default and required value: the model's input size)"),
    Param("vocab", "int", None, lo=1, hi=MAX_TOKENS, nullable=True,
          doc="keep at most this many of the most frequent training tokens (besides the 2 reserved ids)"),
    Param("min_count", "int", 1, lo=1, hi=MAX_TOKENS,
          doc="keep only tokens seen at least this many times in the training split"),
)
DATA: dict[str, tuple[Param, ...]] = {
    "train": SOURCE,
    "validation": SOURCE,
    "test": SOURCE,
    "label": (Param("column", "str", doc="label column of a CSV file, by name"),),
    "scale": (Param("factor", "float", doc="multiply every input by this factor"),),
    "standardize": (Param("per", "name", "feature", choices=("feature", "band"),
                          doc="feature: a mean and std per input value; band: per band of audio features, "
                              "pooled over time (see AUDIO)"),),
    "minmax": (),
    "target": (Param("kind", "name", choices=("standardize",),
                     doc="standardize: a regression model trains on (y - mean) / std of each target, "
                         "fitted on the training split; predictions and metrics are in y's units"),),
    "layout": (Param("order", "name", choices=("channels_first", "channels_last"),
                     doc="how image arrays order a sample's values when both orders fit the input"),),
    "resize": (Param("mode", "name", choices=("stretch", "crop"),
                     doc="how image files of another size become the input's H x W"),),
    "augment": (Param("kind", "name", choices=("crop", "flip", "shift"),
                      doc="a random change of each training image (see AUGMENT)"),),
    "text": (Param("column", "str", doc="the CSV column holding each sample's text, by name"),),
    "tokens": TOKENS,
    "audio": (Param("rate", "int", lo=1, hi=384_000, doc="sample rate in Hz; clips at another rate are resampled"),
              Param("duration", "float", lo=0.0, hi=3600.0, lo_open=True,
                    doc="seconds; each clip is padded with zeros or cropped to it"),
              Param("align", "name", "start", choices=("start", "centre", "onset"),
                    doc="where the kept part of a clip begins: its start, its centre, or its detected onset"),
              Param("classes", "name", "auto", choices=("auto", "folders", "prefix"),
                    doc="labels of a folder of clips: its subfolders' names, or each file name's part before "
                        "the first '_' (auto: folders when it has subfolders)")),
    "features": (Param("kind", "name", choices=("waveform", "spectrogram", "power", "logmel", "mfcc"),
                       doc="what the input layer receives from each clip"),
                 Param("window", "int", 256, lo=2, hi=1 << 16, doc="frame length in samples (Hann window)"),
                 Param("hop", "int", 128, lo=1, hi=1 << 16, doc="samples between frame starts"),
                 Param("bands", "int", 40, lo=1, hi=1024, doc="mel bands (logmel, mfcc)"),
                 Param("fmin", "float", 0.0, lo=0.0, doc="lowest frequency of the mel bands, Hz"),
                 Param("fmax", "float", None, nullable=True, lo=0.0, lo_open=True,
                       doc="highest frequency of the mel bands, Hz (None: half the rate)"),
                 Param("coeffs", "int", 13, lo=1, hi=1024, doc="cepstral coefficients kept (mfcc)")),
}
#: Upper limit of an augmentation's padding or shift, in pixels.
MAX_SHIFT = 1024
#: augmentation kind -> its parameters (written after the kind: ``augment crop padding=4``)
AUGMENT: dict[str, tuple[Param, ...]] = {
    "crop": (Param("padding", "int", 4, lo=1, hi=MAX_SHIFT,
                   doc="zero pixels added on each side before a random H x W crop"),),
    "flip": (Param("p", "float", 0.5, lo=0.0, hi=1.0, lo_open=True,
                   doc="probability of a horizontal (left-right) flip"),),
    "shift": (Param("pixels", "int", 2, lo=1, hi=MAX_SHIFT,
                    doc="largest move along each axis; the edge pixels fill the gap"),),
}
PREPROCESS = ("scale", "standardize", "minmax")
#: data block statements that apply to image inputs (``input CxHxW``) only
IMAGE_ONLY = ("layout", "resize", "augment")
#: data block statements of text inputs (a CSV's text column)
TEXT_ONLY = ("text", "tokens")
#: data block statements that describe audio clips (a data block with them reads folders of WAV files)
AUDIO_ONLY = ("audio", "features")
#: data block statements that may be given more than once
REPEATABLE = PREPROCESS + ("augment",)

# ---------------------------------------------------------------------------- statements
#: Statements of the model body other than layers, and what they take.
SETTINGS = ("loss", "optimizer", "schedule", "regularize", "train", "early_stopping")
#: Statements that structure the file.
STRUCTURE = ("dlrun", "model", "data", "let", "repeat", "as", "residual")
#: Upper limit of one ``repeat`` count (far above any real network; stops typos like 1e9).
MAX_REPEAT = 10_000


def model_keywords() -> tuple[str, ...]:
    from dlrun.dsl.layers import layer_keywords

    return ("data", "let", "repeat", "residual") + layer_keywords() + SETTINGS


def all_names() -> dict[str, tuple[str, ...]]:
    """Every name the reference must document, by group (used by the docs test)."""
    from dlrun.dsl.layers import SPECS
    from dlrun.dsl.losses import LOSSES
    from dlrun.dsl.optimizers import OPTIMIZERS
    from dlrun.dsl.schedules import SCHEDULES

    params = {"from"}
    for spec in (*SPECS.values(), *LOSSES.values(), *OPTIMIZERS.values(), *SCHEDULES.values()):
        params.update(p.name for p in spec.params)
    for table in (ACTIVATIONS, DATA, AUGMENT):
        for plist in table.values():
            params.update(p.name for p in plist)
    for plist in (TRAIN, EARLY_STOPPING, REGULARIZE, SOURCE):
        params.update(p.name for p in plist)
    return {
        "structure": STRUCTURE,
        "layers": tuple(SPECS),
        "activations": tuple(ACTIVATIONS),
        "losses": tuple(LOSSES),
        "optimizers": tuple(OPTIMIZERS),
        "schedules": tuple(SCHEDULES),
        "inits": INITS + tuple(INIT_ALIASES),
        "settings": SETTINGS,
        "data": tuple(DATA),
        "augmentations": tuple(AUGMENT),
        "metrics": METRICS,
        "monitors": monitor_choices(),
        "dtypes": DTYPES,
        "parameters": tuple(sorted(params)),
    }


def is_finite(x) -> bool:
    return not (isinstance(x, float) and not math.isfinite(x))
