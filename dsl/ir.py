"""Typed intermediate representation of a ``.net`` model file.

The transformer (``transform.py``) builds these nodes from the parse tree; the checker
(``checker.py``) validates them, fills in defaults and infers shapes; the runtime builds a
network from a checked ``Model``. Every node carries the source position it came from.

Conventions the runtime relies on (after ``check``):
- ``let`` constants and constant arithmetic are already evaluated; ``repeat`` blocks are
  already expanded, so ``Model.layers`` is the flat list of layers in order, the first
  being ``input``.
- Every ``params`` mapping holds *every* parameter of its table entry (defaults filled
  in), keyed by the parameter's DSL name, with Python values of the declared type.
- ``Layer.shape`` is the inferred output shape per sample (a tuple of ints, any rank).
- Layers form a graph: ``Layer.inputs`` are the indices in ``Model.layers`` of the layers
  whose outputs it takes, ``()`` meaning the layer just before it. ``Model.layers`` is in
  topological order (every layer after its inputs) and the last layer is the output.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Pos:
    """A source span, 1-based: ``line:col`` up to ``end_line:end_col`` (exclusive)."""

    line: int
    col: int
    end_line: int
    end_col: int


NOWHERE = Pos(0, 0, 0, 0)


@dataclass(frozen=True)
class Activation:
    """An activation by its DSL name with its parameters, e.g. ``leaky_relu(alpha=0.1)``.

    Names: linear, relu, leaky_relu(alpha), elu(alpha), sigmoid, tanh, softplus, gelu,
    swish, softmax.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    pos: Pos = NOWHERE


@dataclass(frozen=True)
class Layer:
    """One layer by its DSL keyword.

    kind      params after checking (the parameters of every kind: dsl/layers/)
    input     shape: tuple[int, ...]                  (features, or e.g. (28, 28), (1, 28, 28))
    dense     units: int, activation: Activation, init: str | None
              ('he_normal' | 'he_uniform' | 'xavier_normal' | 'xavier_uniform';
              None = the default that follows the activation), bias: bool,
              l1: float | None, l2: float | None      (None = the global regularize value)
    activation  activation: Activation                (a standalone activation layer)
    batchnorm momentum: float, eps: float            running := momentum*running + (1-momentum)*batch
    dropout   rate: float                             in [0, 1)
    flatten   (none)
    add, concat (none): they join the outputs of ``inputs``
    """

    kind: str
    params: Mapping[str, Any]
    name: str | None = None
    shape: tuple[int, ...] | None = None
    pos: Pos = NOWHERE
    inputs: tuple = ()


def layer_inputs(layers, index: int) -> tuple[int, ...]:
    """The indices of the layers feeding ``layers[index]`` (none for the first, the input)."""
    layer = layers[index]
    if layer.inputs:
        return tuple(layer.inputs)
    return () if index == 0 else (index - 1,)


@dataclass(frozen=True)
class Loss:
    """name: a loss of ``dsl/losses.py`` (mse, mae, huber, cross_entropy, ...); params: every
    parameter of its spec; param_pos: where the file wrote a parameter's value (for checks
    that need the model's shapes, such as the length of ``class_weight=[...]``)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    pos: Pos = NOWHERE
    param_pos: Mapping[str, Pos] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Regularize:
    """Global penalties on dense weights (not biases, not batch-norm parameters).

    Penalty added to the loss: ``l1 * sum|w| + l2/2 * sum w^2``, so the gradient
    contribution is ``l1*sign(w) + l2*w``.
    """

    l1: float = 0.0
    l2: float = 0.0
    pos: Pos = NOWHERE


@dataclass(frozen=True)
class Optimizer:
    """name: an optimizer of ``dsl/optimizers.py`` (sgd, adam, adamw, rmsprop, adagrad, ...).

    params (all filled in by the checker, the ones not used by an optimizer ignored):
    every name of ``optimizers.IR_PARAMS``: lr, momentum, nesterov, beta1, beta2, eps, rho,
    weight_decay, clip_norm (None = off).
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    pos: Pos = NOWHERE


@dataclass(frozen=True)
class Train:
    """Training settings: epochs, batch_size, seed, shuffle, dtype ('float32'|'float64'), metrics."""

    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    shuffle: bool = True
    dtype: str = "float32"
    metrics: tuple[str, ...] = ()
    pos: Pos = NOWHERE


@dataclass(frozen=True)
class EarlyStopping:
    """monitor: 'val_loss' | 'val_accuracy' | 'loss' | ... ; mode: 'min' | 'max' ('auto' resolved)."""

    monitor: str = "val_loss"
    mode: str = "min"
    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True
    pos: Pos = NOWHERE


@dataclass(frozen=True)
class Schedule:
    """name: a learning-rate schedule of ``dsl/schedules.py`` (step, multistep, exponential,
    cosine, plateau, constant); params: every parameter of that schedule, defaults filled in
    (plateau's better direction follows its monitor: ``tables.MAXIMIZED_MONITORS``)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    pos: Pos = NOWHERE


@dataclass(frozen=True)
class Source:
    """A data file. ``path`` is as written (relative paths resolve against the model file).

    ``labels``: a separate label file (IDX label files for MNIST). ``x_key``/``y_key``:
    array names inside an ``.npz`` (default 'x' and 'y').
    """

    path: str
    labels: str | None = None
    x_key: str = "x"
    y_key: str = "y"
    pos: Pos = NOWHERE


@dataclass(frozen=True)
class Preprocess:
    """kind: 'scale' (params factor: float) | 'standardize' | 'minmax'. Applied in order."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    pos: Pos = NOWHERE


@dataclass(frozen=True)
class Augment:
    """kind: 'crop' (params padding: int) | 'flip' (p: float) | 'shift' (pixels: int); applied
    to training batches only, in order."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    pos: Pos = NOWHERE


@dataclass(frozen=True)
class Tokens:
    """How a text column becomes token ids (the data block's ``tokens``; ``runtime/data/tokens.py``).

    ``unit``: 'chars' | 'words'; ``lowercase``; ``max_length``: ids per sample (None: the
    model's input size); ``vocab``: at most this many tokens besides the reserved ids 0
    (padding) and 1 (out of vocabulary), None for no cap; ``min_count``: fewest times a token
    is seen in the training split to be kept.
    """

    unit: str = "chars"
    lowercase: bool = False
    max_length: int | None = None
    vocab: int | None = None
    min_count: int = 1
    pos: Pos = NOWHERE


@dataclass(frozen=True)
class Audio:
    """The data block's ``audio`` and ``features`` statements: clips are read at ``rate`` Hz,
    padded or cropped to ``duration`` seconds from ``align`` (start | centre | onset), labelled
    by ``classes`` (auto | folders | prefix), and turned into ``features`` (waveform |
    spectrogram | power | logmel | mfcc) with ``params`` (window, hop, bands, fmin, fmax,
    coeffs; see ``dsl/tables.py``'s ``DATA``). ``dsl/audio.py`` gives the shape they make."""

    rate: int
    duration: float
    align: str = "start"
    classes: str = "auto"
    features: str = "logmel"
    params: Mapping[str, Any] = field(default_factory=dict)
    pos: Pos = NOWHERE


@dataclass(frozen=True)
class Data:
    """Where the data comes from and how it is prepared.

    ``validation``/``test``: a Source, a fraction of the training file (0 < f < 1) held
    out, or None. ``label``: the label column of a CSV file (name); ``label_pos`` the
    position of its ``label`` statement (``dlrun check --data`` points there).
    ``layout``: ``'channels_first'`` / ``'channels_last'``, how image arrays order a sample
    when both orders fit the input (None: not given). ``resize``: ``'stretch'`` / ``'crop'``,
    how image files of another size become the input's H x W (None: they are refused).
    ``augment``: random changes of the training images, in order.
    ``settings_pos``: the position of each
    image or text statement given (``layout``, ``text``, ...), for the checks against the input.
    ``text``: the CSV column of texts (None: the inputs are numbers); ``tokens``: how its
    texts become token ids (set whenever ``text`` is: the defaults when not written).
    ``audio``: the ``audio`` and ``features`` statements (None: the sources are not sound);
    with them a folder (a path ending in ``/``) is a folder of WAV clips.
    ``target``: ``'standardize'`` when a regression model trains on standardized targets
    (``target standardize``; its position in ``settings_pos``), else None.
    """

    train: Source | None = None
    validation: Source | float | None = None
    test: Source | float | None = None
    label: str | None = None
    preprocess: tuple[Preprocess, ...] = ()
    pos: Pos = NOWHERE
    label_pos: Pos = NOWHERE
    layout: str | None = None
    resize: str | None = None
    augment: tuple[Augment, ...] = ()
    settings_pos: Mapping[str, Pos] = field(default_factory=dict)
    text: str | None = None
    tokens: Tokens | None = None
    audio: Audio | None = None
    target: str | None = None


@dataclass(frozen=True)
class Output:
    """How the model's output is produced and read: decided once, by the checker
    (``dsl/output.py``), and read by the runtime network.

    activation  the activation that produces the output ('linear' if none); dropout and
                flatten after it change no value at inference and are looked through
    layer       index in ``Model.layers`` of the layer applying it (None when linear)
    fused       the loss computes ``activation`` itself from the logits (cross_entropy with
                softmax, binary_cross_entropy with sigmoid): training and evaluation stop
                before it, and ``layer`` is then the last layer
    proba       the activation ``predict`` applies to linear logits (softmax / sigmoid of a
                linear output trained with a cross-entropy), or None
    task        'classification' | 'binary' | 'regression' (implied by the loss)
    """

    activation: str = "linear"
    layer: int | None = None
    fused: bool = False
    proba: str | None = None
    task: str = "regression"


@dataclass(frozen=True)
class Model:
    """A whole checked model file."""

    name: str
    version: int
    layers: tuple[Layer, ...]
    loss: Loss
    optimizer: Optimizer
    regularize: Regularize = Regularize()
    train: Train = Train()
    early_stopping: EarlyStopping | None = None
    schedule: Schedule | None = None
    data: Data | None = None
    path: str | None = None
    pos: Pos = NOWHERE
    output: Output | None = None   # filled in by the checker

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.layers[0].params["shape"])

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.layers[-1].shape)


def to_dict(node, *, positions: bool = True):
    """The IR as plain JSON-compatible data (``dlrun check --ir``)."""

    def conv(value):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out = {"node": type(value).__name__}
            for f in dataclasses.fields(value):
                if (f.name == "pos" or f.name.endswith("_pos")) and not positions:
                    continue
                out[f.name] = conv(getattr(value, f.name))
            return out
        if isinstance(value, Mapping):
            return {str(k): conv(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [conv(v) for v in value]
        return value

    return conv(node)


def to_json(node, *, positions: bool = True, indent: int | None = 2) -> str:
    return json.dumps(to_dict(node, positions=positions), indent=indent)


def architecture_dict(model: Model):
    """What defines the parameter layout: layers and dtype, without positions or names.

    The runtime hashes this to tag weights files; training settings are not part of it.
    """
    layers = []
    for i, l in enumerate(model.layers):
        entry = {"kind": l.kind, "params": to_dict(dict(l.params), positions=False), "shape": list(l.shape or ())}
        if l.inputs and tuple(l.inputs) != (i - 1,):
            entry["inputs"] = list(l.inputs)   # a straight line of layers stays as it always was
        layers.append(entry)
    return {"layers": layers, "dtype": model.train.dtype}
