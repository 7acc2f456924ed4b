"""``embedding DIM``: token ids (a row of ``T`` ids per sample, 0 = padding) become ``T x DIM``
vectors, ``y[t] := W[id_t]``, W (vocabulary, DIM). Padding (id 0) maps to a zero row that
never trains; the positions after a sample's last token are padding for the layers that pool
over time."""
from dlrun.dsl import tables as T
from dlrun.dsl.layers.base import DataMismatch, LayerSpec, ShapeError, dims


class Embedding(LayerSpec):
    kind = "embedding"
    params = (
        T.Param("dim", "int", lo=1, hi=T.MAX_INT, doc="size of each token's vector"),
        T.Param("vocab", "int", None, lo=2, hi=T.MAX_INT, nullable=True,
                doc="vocabulary size, the reserved ids 0 (padding) and 1 (unknown) included; "
                    "left out: the size of the data's vocabulary"),
    )
    positional = 1
    example = "e.g. 'embedding 32'"
    has_weights = True
    kernels = ("seq",)

    def infer(self, layer, in_shapes, sources):
        shape = tuple(in_shapes[0])
        if len(shape) != 1:
            raise ShapeError(f"'embedding' takes a row of token ids (e.g. 'input 200') but receives "
                             f"shape {dims(shape)} from {sources[0]}")
        return (shape[0], layer.params["dim"])

    def cost(self, layer, in_shapes, out_shape):
        v = layer.params.get("vocab")
        return (None if v is None else v * layer.params["dim"]), 0, 0

    def awaits(self, layer):
        return "its vocabulary size" if layer.params.get("vocab") is None else None

    def from_data(self, layer, vocab_size):
        rows = layer.params.get("vocab")
        if vocab_size is None:
            if rows is None:
                raise DataMismatch(
                    f"'embedding {layer.params['dim']}' takes its vocabulary size from the data's "
                    "tokens, but these data have no token ids (a data block with 'text COLUMN' makes "
                    f"them); with token ids of your own write 'embedding {layer.params['dim']} vocab=N'")
            return {}
        if rows is None:
            return {"vocab": int(vocab_size)}
        if int(rows) < vocab_size:
            raise DataMismatch(
                f"'embedding' has vocab={int(rows)} rows, but the data's vocabulary has {vocab_size} ids "
                f"({vocab_size - 2} tokens and the reserved 0 and 1); leave vocab= out (the data's size is "
                f"taken), write vocab={vocab_size}, or cap the tokens with 'tokens ... "
                f"vocab={max(int(rows) - 2, 1)}'")
        return {}

    def label(self, layer):
        return f"embedding {layer.params['dim']}"
