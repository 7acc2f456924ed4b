"""``embedding DIM``: token ids (a row of ``T`` ids per sample, 0 = padding) become ``T x DIM``
vectors, ``y[t] := W[id_t]``, W (vocabulary, DIM). Padding (id 0) maps to a zero row that
never trains; the positions after a sample's last token are padding for the layers that pool
over time."""
from dlrun.dsl import tables as T
from dlrun.dsl.layers.base import LayerSpec, ShapeError, dims


class Embedding(LayerSpec):
    kind = "embedding"
    params = (
        T.Param("dim", "int", lo=1, hi=T.MAX_INT, doc="size of each token's vector"),
        T.Param("vocab", "int", None, lo=2, hi=T.MAX_INT, nullable=True,
                doc="vocabulary size, the reserved ids 0 (padding) and 1 (unknown) included"),
    )
    positional = 1
    example = "e.g. 'embedding 32 vocab=200'"
    has_weights = True
    kernels = ("seq",)

    def infer(self, layer, in_shapes, sources):
        shape = tuple(in_shapes[0])
        if len(shape) != 1:
            raise ShapeError(f"'embedding' takes a row of token ids (e.g. 'input 200') but receives "
                             f"shape {dims(shape)} from {sources[0]}")
        return (shape[0], layer.params["dim"])

    def cost(self, layer, in_shapes, out_shape):
        v = layer.params.get("vocab") or 0
        return v * layer.params["dim"], 0, 0

    def label(self, layer):
        return f"embedding {layer.params['dim']}"
