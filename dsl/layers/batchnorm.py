"""``batchnorm``: normalisation over the batch, ``y := gamma * xhat + beta``: per feature of a
flat input, per channel of a sequence T x C (over batch and time) and of an image C x H x W
(over batch, height and width)."""
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
        if len(shape) == 3:
            return shape[0]
        return shape[-1] if len(shape) == 2 else prod(shape)

    def cost(self, layer, in_shapes, out_shape):
        d = self.features(out_shape)
        return 2 * d, 2 * d, 2 * prod(out_shape)
