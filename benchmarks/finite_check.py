"""Cost of the training loop's finiteness guards, as a share of epoch time.

The guards: every batch, ``math.isfinite(loss)`` on the loss the loss kernel already returns
(plus the clipped gradient norm when clipping is on); every epoch end (and before a
checkpoint), ``check_parameters``: one float64 sum over the flat parameter buffer.

Measured two ways in the same run:
  direct   the guards' own time (timed in isolation, many repetitions) x their count per
           epoch, divided by the epoch time;
  A/B      epochs with ``check_parameters`` replaced by a no-op vs. the real one, alternated
           (noise-level when the guard is as cheap as it should be).

    python benchmarks/finite_check.py models/mnist_mlp.net --data-root ../shared --epochs 2
    python benchmarks/finite_check.py models/digits.net
"""
import argparse
import math
import os
import statistics
import sys
import timeit

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data-root")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per A/B arm and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)

    import dlrun
    from dlrun.runtime import train as T
    from dlrun.runtime.api import Model
    from dlrun.dsl import load_file

    model_ir = load_file(args.model)
    base = os.path.abspath(args.data_root) if args.data_root else os.path.dirname(os.path.abspath(args.model))
    model = Model(model_ir, base_dir=base, path=args.model)
    sp = model.splits()
    net = model.network
    n = len(sp.train)
    batches = math.ceil(n / model_ir.train.batch_size)

    real = T.check_parameters
    arms = {"with guard": real, "no-op guard": lambda *a, **k: None}
    times = {k: [] for k in arms}
    model.fit(epochs=1)  # warm-up (buffers, BLAS threads)
    for _ in range(args.rounds):
        for name, fn in arms.items():
            T.check_parameters = fn
            try:
                h = model.fit(epochs=args.epochs)
            finally:
                T.check_parameters = real
            times[name].extend(e["seconds"] for e in h.epochs)
    epoch = statistics.median(times["with guard"])

    reps = 200
    t_params = min(timeit.repeat(lambda: real(net, 1, batches, batches, model.optimizer), number=reps, repeat=5)) / reps
    loss = 0.123456
    t_loss = min(timeit.repeat(lambda: math.isfinite(loss), number=100000, repeat=5)) / 100000
    direct = (t_params + batches * t_loss) / epoch

    print(f"{model_ir.name}: {net.param_count} parameters, {n} training samples, {batches} batches/epoch")
    print(f"epoch time (median of {len(times['with guard'])}): {epoch * 1e3:.1f} ms")
    print(f"check_parameters: {t_params * 1e6:.1f} us per epoch; isfinite(loss): {t_loss * 1e9:.0f} ns per batch")
    print(f"direct: guards cost {100 * direct:.4f}% of epoch time")
    ab = statistics.median(times["with guard"]) / statistics.median(times["no-op guard"]) - 1
    spread = {k: f"{min(v) * 1e3:.1f}..{max(v) * 1e3:.1f} ms" for k, v in times.items()}
    print(f"A/B: epoch median with guard / without = {1 + ab:.4f} ({100 * ab:+.2f}%); epoch times "
          f"with guard {spread['with guard']}, without {spread['no-op guard']} (the A/B difference is only "
          f"meaningful when it exceeds that spread; the direct figure is the guard's own cost)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
