"""One flat buffer for every trainable tensor of a network, one for their gradients.

Each layer's parameters are views into ``ParamStore.flat`` and its gradients views into
``ParamStore.grad`` (same offsets), so the optimizer updates the whole network in a few
fused kernel calls over contiguous memory instead of one call per tensor.

Tensors are laid out grouped by their penalties (``l1``, ``l2``) and by whether they are
weights (decoupled weight decay applies to weights only), so that each group is one
contiguous *segment* that the optimizer updates with a single call. Every tensor starts on
a 64-byte boundary (padding stays zero in both buffers and is never touched by a layer).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from dlrun.errors import UsageError

ALIGN_BYTES = 64


@dataclass(frozen=True)
class Segment:
    """A contiguous run ``[start, stop)`` of the flat buffers sharing the same penalties."""

    start: int
    stop: int
    l1: float
    l2: float
    is_weight: bool


@dataclass(frozen=True)
class Entry:
    layer_key: str
    name: str
    shape: tuple[int, ...]
    offset: int
    size: int
    role: str
    l1: float
    l2: float


def physical_memory() -> int | None:
    """Bytes of RAM of this machine (None when the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _check_fits_in_memory(entries, size, dtype):
    # parameters + gradients + up to two optimizer moments: refuse a model that cannot
    # possibly fit before allocating (an over-committed allocation would be killed later)
    need = 4 * size * dtype.itemsize
    ram = physical_memory()
    if ram is not None and need > ram:
        biggest = max(entries.values(), key=lambda e: e.size)
        raise UsageError(
            f"the model has {size:,} parameters ({need / 2**30:.1f} GiB with gradients and optimizer "
            f"state), more than this machine's memory ({ram / 2**30:.1f} GiB); the largest tensor is "
            f"{biggest.layer_key}.{biggest.name} with shape {biggest.shape}"
        )


class ParamStore:
    """Lay out ``(layer_key, ParamSpec)`` pairs, allocate, and hand out views."""

    def __init__(self, specs, dtype):
        self.dtype = np.dtype(dtype)
        align = max(1, ALIGN_BYTES // self.dtype.itemsize)
        groups: dict[tuple, list] = {}
        for layer_key, spec in specs:
            key = (float(spec.l1), float(spec.l2), spec.role == "weight")
            groups.setdefault(key, []).append((layer_key, spec))
        self.entries: dict[tuple[str, str], Entry] = {}
        self.segments: list[Segment] = []
        offset = 0
        for (l1, l2, is_weight), members in groups.items():
            start = offset
            for layer_key, spec in members:
                size = int(np.prod(spec.shape, dtype=np.int64))
                self.entries[(layer_key, spec.name)] = Entry(
                    layer_key, spec.name, tuple(spec.shape), offset, size, spec.role, l1, l2
                )
                offset += -(-size // align) * align
            self.segments.append(Segment(start, offset, l1, l2, is_weight))
        self.size = offset
        _check_fits_in_memory(self.entries, self.size, self.dtype)
        self.flat = np.zeros(self.size, self.dtype)
        self.grad = np.zeros(self.size, self.dtype)

    def view(self, layer_key: str, name: str):
        """(parameter view, gradient view) of one tensor."""
        e = self.entries[(layer_key, name)]
        sl = slice(e.offset, e.offset + e.size)
        return self.flat[sl].reshape(e.shape), self.grad[sl].reshape(e.shape)

    def alloc_for(self, layer_key: str):
        """The ``alloc(name, shape)`` callback a layer's ``build`` uses."""

        def alloc(name, shape):
            p, g = self.view(layer_key, name)
            if p.shape != tuple(shape):
                raise RuntimeError(f"{layer_key}.{name}: laid out as {p.shape}, asked for {tuple(shape)}")
            return p, g

        return alloc

    @property
    def count(self) -> int:
        """Number of trainable scalars (without padding)."""
        return sum(e.size for e in self.entries.values())

    def penalty(self) -> float:
        """``sum over weights of l1 * |w| + l2/2 * w^2`` (the term the penalties add to the loss)."""
        total = 0.0
        for seg in self.segments:
            if seg.l1 == 0.0 and seg.l2 == 0.0:
                continue
            w = self.flat[seg.start:seg.stop]
            if seg.l1:
                total += seg.l1 * float(np.abs(w).sum(dtype=np.float64))
            if seg.l2:
                # einsum, not np.dot: numpy's BLAS is a second OpenBLAS (the kernels use
                # scipy's), and waking its thread pool next to the other costs more than this
                total += 0.5 * seg.l2 * float(np.einsum("i,i->", w, w, dtype=np.float64))
        return total
