"""Layer classes keyed by their DSL keyword (``dense``, ``batchnorm``, ...)."""
from __future__ import annotations

LAYERS: dict[str, type] = {}


def register(kind: str):
    """Class decorator: ``@register("dense")`` makes the class the runtime of ``dense``."""

    def deco(cls):
        if kind in LAYERS:
            raise RuntimeError(f"layer kind {kind!r} registered twice")
        cls.kind = kind
        LAYERS[kind] = cls
        return cls

    return deco


def make_layer(node, in_shape, index: int = 0):
    """Build the runtime layer for a checked ``ir.Layer``."""
    cls = LAYERS.get(node.kind)
    if cls is None:
        from dlrun.errors import UsageError

        known = ", ".join(sorted(LAYERS))
        raise UsageError(
            f"layer {index} (line {node.pos.line}): the runtime has no layer {node.kind!r} "
            f"(known: {known})"
        )
    return cls(node, in_shape, index)

