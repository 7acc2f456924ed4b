"""The data block's ``augment`` statements: random changes of each training image, applied to
the training batches only (evaluation and prediction never augment).

``crop padding=P``  pad the image with P zero pixels on each side, cut a random H x W
                    window back out: a move of dy, dx in [-P, P], zeros in the gap
``flip p=0.5``      mirror left-right with probability p
``shift pixels=S``  a move of dy, dx in [-S, S], the edge pixels repeated into the gap

They apply in the order written, per sample, to the stored values (uint8 pixels before
``scale``/``standardize``: a zero is a black pixel), on ``(C, H, W)`` images.

Every random choice is a counter-based draw: a hash (splitmix64) of the run's seed, the
epoch, the sample's position in the training set and the draw's number. So a run is
reproducible, a sample's changes do not depend on the batch it lands in, and ``--resume``
is bit-exact with no state to save.
"""
from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_SALT = 0xA06E  # this stream apart from the other uses of the seed


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def draws(seed: int, epoch: int, positions: np.ndarray, count: int) -> np.ndarray:
    """uint64 hashes ``(len(positions), count)``: draw ``k`` of the sample at ``positions[i]``
    in ``epoch`` of the run seeded ``seed``; the same arguments give the same values."""
    key = np.array([(int(seed) * 0x10001 + _SALT) & (2**64 - 1)], np.uint64)
    key = _mix(_mix(key) + np.array([int(epoch) & (2**64 - 1)], np.uint64) * _GOLDEN)
    per_sample = _mix(key + (np.asarray(positions, np.uint64) + np.uint64(1)) * _GOLDEN)
    k = (np.arange(count, dtype=np.uint64) + np.uint64(1)) * _M2
    return _mix(per_sample[:, None] ^ k[None, :])


def _moved(img: np.ndarray, dy: int, dx: int, edge: bool) -> np.ndarray:
    """``out[:, y, x] = img[:, y + dy, x + dx]``; outside the image the edge pixel (``edge``)
    or zero."""
    _, h, w = img.shape
    rows, cols = np.arange(h) + dy, np.arange(w) + dx
    out = img[:, np.clip(rows, 0, h - 1)][:, :, np.clip(cols, 0, w - 1)]
    if not edge:
        out[:, (rows < 0) | (rows >= h), :] = 0
        out[:, :, (cols < 0) | (cols >= w)] = 0
    return out


class Augmenter:
    """The ``augment`` steps of a data block, for images ``(C, H, W)``, with the run's seed."""

    def __init__(self, steps, seed: int, image_shape):
        self.steps = tuple((s.kind, dict(s.params)) for s in steps)
        self.seed = int(seed)
        self.shape = tuple(int(d) for d in image_shape)
        self.count = 2 * len(self.steps)  # draws per sample: two per step

    @classmethod
    def for_model(cls, model, seed: int) -> "Augmenter | None":
        """The augmenter of ``model``'s data block (an ``ir.Model``), or None without one."""
        data = getattr(model, "data", None)
        if data is None or not data.augment:
            return None
        return cls(data.augment, seed, model.input_shape)

    def apply(self, x: np.ndarray, positions: np.ndarray, epoch: int) -> None:
        """Change the batch ``x`` (``(m, C*H*W)`` or ``(m, C, H, W)``, its rows the training
        samples at ``positions``) in place, as drawn for ``epoch``."""
        m = x.shape[0]
        images = x.reshape((m,) + self.shape)
        h = draws(self.seed, epoch, positions, self.count)
        for i in range(m):
            img = images[i]
            for k, (kind, p) in enumerate(self.steps):
                a, b = h[i, 2 * k], h[i, 2 * k + 1]
                if kind == "flip":
                    # 53 random bits as a fraction in [0, 1)
                    if float(a >> np.uint64(11)) * 2.0**-53 < p["p"]:
                        img[...] = img[:, :, ::-1]
                else:
                    reach = p["padding"] if kind == "crop" else p["pixels"]
                    span = np.uint64(2 * reach + 1)
                    dy, dx = int(a % span) - reach, int(b % span) - reach
                    if dy or dx:
                        img[...] = _moved(img, dy, dx, edge=kind == "shift")
