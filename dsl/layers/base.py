"""The description of a layer kind, pure Python (no numpy, no kernels): what the checker,
``dlrun summary``, ``dlrun fmt``, the language reference and the runtime read about it.

A spec says, for its DSL keyword:

    params        its parameters (``tables.Param``: name, type, range, default, doc), in
                  positional order; ``positional`` of them may be written without a name
    infer()       the per-sample output shape from the input shape(s), or ``ShapeError``
    cost()        (trainable parameters, non-trainable buffers, forward FLOPs) per sample
    text()        its canonical line (without ``as NAME`` / ``from=NAME``)
    training_only the parameters that matter only in training (a weights file trained
                  with other values still loads for inference)
    inputs        how many layers feed it: 0 (``input``), 1, or ``MANY`` (two or more)

Shapes are tuples of any rank: ``(features,)``, ``(C, H, W)``, ``(T, C)``. A batch is a
C-contiguous ``(n, ...)`` array: the runtime keeps it as ``(n, prod(shape))``, so
``flatten`` is free.
"""
from __future__ import annotations

from dlrun.dsl import tables as T
from dlrun.dsl.printing import non_default

#: ``inputs`` of a layer that joins two or more outputs (``add``, ``concat``).
MANY = -1

#: The settings of every layer with a weight tensor (dense, conv2d), after its own.
WEIGHT_SETTINGS = (
    T.Param("init", "name", None, choices=T.INITS + tuple(T.INIT_ALIASES), nullable=True,
            doc="weight initialiser; default he_normal for the relu family, xavier_uniform otherwise"),
    T.Param("bias", "bool", True, doc="add a bias vector"),
    T.Param("l1", "float", None, lo=0.0, nullable=True,
            doc="L1 penalty on this layer's weights (overrides regularize)"),
    T.Param("l2", "float", None, lo=0.0, nullable=True,
            doc="L2 penalty on this layer's weights (overrides regularize)"),
)


class DataMismatch(Exception):
    """A layer's settings do not fit the data (its message says what and what is expected)."""


class ShapeError(Exception):
    """A layer cannot take the shape(s) it receives; ``str(err)`` is the message. ``pos``
    (optional) points at the part of the statement at fault (default: its keyword)."""

    def __init__(self, message: str, pos=None):
        super().__init__(message)
        self.pos = pos


def dims(shape) -> str:
    """(1, 28, 28) -> '1x28x28'."""
    return "x".join(str(d) for d in shape)


def prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


class LayerSpec:
    """Base of every spec; a kind overrides what differs."""

    kind = ""
    params: tuple = ()
    positional = 0
    doc = ""
    #: a short example of the statement, for "needs 'units'" messages
    example = ""
    training_only: frozenset = frozenset()
    inputs = 1
    #: changes no value at inference (dropout, flatten): the output activation is looked
    #: for before it, and a fused loss's activation may not be followed by anything else
    passthrough = False
    #: holds weights that learn a mapping (a model needs at least one such layer)
    has_weights = False
    #: normalises over the batch (a batch of one sample is meaningless)
    batch_statistics = False
    #: kernel modules (``kernels/NAME.pyx``) its runtime layer computes with
    kernels: tuple = ()

    def keywords(self) -> tuple:
        """The statement keywords that make this layer (its kind, by default)."""
        return (self.kind,)

    def bind(self, binder, stmt, args) -> dict:
        """The layer's parameters from a statement (``args`` without ``from=``), through the
        elaborator's ``binder``; reports and raises ``values._Bad`` on bad values."""
        from dlrun.dsl.values import _Bad

        if not binder.no_call(stmt):
            raise _Bad
        return binder.bind(f"'{stmt.keyword}'", self.params, args, npos=self.positional,
                           where=stmt.keyword_pos, flags=True, example=self.example)

    def infer(self, layer, in_shapes, sources) -> tuple:
        """Output shape per sample. ``in_shapes``: the shapes flowing in; ``sources``: how
        messages name the layers they come from ('layer 0 (input)')."""
        return tuple(in_shapes[0])

    def warning(self, layer, in_shapes) -> str | None:
        """A warning about a layer that works but does not do what was likely meant."""
        return None

    def activation(self, layer) -> str | None:
        """The activation this layer applies (None: none)."""
        return None

    def inert(self, layer) -> bool:
        """True when the layer changes no value at inference (``dropout``, ``flatten``,
        ``activation linear``): the output activation is looked for before it."""
        return self.passthrough

    def cost(self, layer, in_shapes, out_shape) -> tuple[int, int, int]:
        """(trainable parameters, non-trainable buffers, forward FLOPs) per sample; the
        parameters are None while a size they depend on awaits the data (``awaits``)."""
        return 0, 0, 0

    def awaits(self, layer) -> str | None:
        """What the layer still takes from the data because the file leaves it out (e.g.
        "its vocabulary size"), or None: the network can only be built once it is known."""
        return None

    def from_data(self, layer, vocab_size) -> dict:
        """The parameters the data settles (those ``awaits`` names), as ``{name: value}``;
        checks the file's own values against the data. ``vocab_size``: the data's token id
        count (the reserved ids included), None when the data has no token ids. Raises
        ``DataMismatch`` when the two disagree or the data lacks what is awaited."""
        return {}

    def word(self, layer) -> str:
        """How messages name the layer's kind: 'dense', 'relu' for an activation layer."""
        return self.kind

    def hint(self, stmt) -> tuple | None:
        """``(pos, message)`` for a statement of this kind written in a way a user from
        elsewhere would write it (checked before its values are bound), or None."""
        return None

    def label(self, layer) -> str:
        """The kind column of ``dlrun summary`` ('dense relu', 'dropout 0.2')."""
        return self.kind

    def text(self, layer) -> str:
        """The canonical statement, without ``as``/``from=``: the required positional values
        bare, then the settings that differ from their defaults as name=value."""
        from dlrun.dsl.printing import pair_text, value_text

        lead = [p for p in self.params[:self.positional] if p.required]
        bare = [pair_text(layer.params[p.name], short=False) if p.type in ("pair", "padding")
                else value_text(layer.params[p.name]) for p in lead]
        skip = tuple(p.name for p in lead)
        return " ".join([self.kind] + bare + non_default(self.params, layer.params, skip=skip))
