"""``batchnorm``: normalisation over the batch, ``y := gamma * xhat + beta``: per feature of a
flat or sequence input, per channel (over batch, height and width) of an image C x H x W."""
from dlrun.dsl import tables as T
from dlrun.dsl.layers.base import LayerSpec, prod


class BatchNorm(LayerSpec):
    kind = "batchnorm"
    params = (
        T.Param("momentum", "float", 0.9, lo=0.0, hi=1.0, hi_open=True,
                doc="running := momentum*running + (1-momentum)*batch"),
        T.Param("eps", "float", 1e-5, lo=0.0, lo_open=True, doc="added to the variance"),
    )
    training_only = frozenset({"momentum"})
    batch_statistics = True
    kernels = ("batchnorm",)

    @staticmethod
    def features(shape) -> int:
        """How many (gamma, beta, running mean, running variance) it keeps for ``shape``."""
        return shape[0] if len(shape) == 3 else prod(shape)

    def cost(self, layer, in_shapes, out_shape):
        d = self.features(out_shape)
        return 2 * d, 2 * d, 2 * prod(out_shape)
