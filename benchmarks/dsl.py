"""Speed of the model language: parse + check of a 200-layer file, and ``dlrun check`` wall time.

    python benchmarks/dsl.py [--layers 200] [--repeats 30] [--runs 15] [--json]

Targets (issue 3): parse + check of a 200-layer file <= 50 ms (after the parser is built,
which happens once per process); ``dlrun check models/digits.net`` process wall <= 0.15 s.

Wall times of fresh processes depend on the machine and its load, so each is reported
next to references measured in the same run: the bare interpreter (``python -c pass``)
and ``python -c "import lark"``. Child processes may write bytecode caches (as an installed
package has them), and one warm-up run precedes the timed ones.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_MODEL = os.path.join(REPO, "models", "digits.net")


def big_model(n_layers: int) -> str:
    """A valid model file with ``n_layers`` layers after ``input`` (no repeat: every line parsed)."""
    lines = ["# generated for benchmarks/dsl.py", "dlrun 1", "model big {", "  let width = 64",
             "  input 28x28", "  flatten"]
    kinds = [
        "  dense width relu init=he l2=1e-4",
        "  batchnorm momentum=0.9 eps=1e-5",
        "  dropout 0.1  # regularise",
        "  dense width*2 leaky_relu(alpha=0.1) bias=true",
        "  tanh",
        "  dense width/2 + 32 elu(0.5) init=xavier",
        "  swish",
    ]
    for i in range(n_layers - 3):  # + input, flatten and the output layer
        lines.append(kinds[i % len(kinds)] + (f" as layer{i}" if i % 3 == 0 else ""))
    lines += ["  dense 10 softmax", "  loss cross_entropy label_smoothing=0.1",
              "  optimizer adam lr=1e-3 clip_norm=1.0",
              "  train epochs=10 batch=64 seed=1 metrics=[accuracy]",
              "  early_stopping monitor=loss patience=3", "}"]
    return "\n".join(lines) + "\n"


def time_parse(text: str, repeats: int) -> dict:
    import dlrun.dsl as dsl
    from dlrun.dsl import checker, parser  # noqa: F401  (imports are not part of the build time)

    parser.import_lark()
    t0 = time.perf_counter()
    parser.get_parser()
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = dsl.parse(text, "big.net")
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dsl.parse(text, "big.net")
        times.append(time.perf_counter() - t0)
    return {"layers": len(model.layers), "lines": text.count("\n"), "parser_build_s": build,
            "first_parse_s": first, "min_s": min(times), "median_s": statistics.median(times)}


def time_process(cmd: list[str], runs: int, env) -> dict:
    """Wall time and CPU time (user + system, from the child's rusage) of a fresh process.

    CPU time is reported because wall time on a loaded machine includes waiting for a core.
    """
    import resource

    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # warm-up
    times, cpu = [], []
    rc = None
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        rc = proc.returncode
    return {"cmd": " ".join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd)),
            "min_s": min(times), "median_s": statistics.median(times), "cpu_min_s": min(cpu),
            "exit": rc}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=30, help="in-process parses timed")
    ap.add_argument("--runs", type=int, default=15, help="processes timed per command")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="file for the dlrun check wall time")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    text = big_model(args.layers)
    parse = time_parse(text, args.repeats)

    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        big_path = os.path.join(tmp, "big.net")
        with open(big_path, "w") as f:
            f.write(text)
        procs = {
            "python -c pass": time_process([py, "-c", "pass"], args.runs, env),
            "python -c 'import lark'": time_process([py, "-c", "import lark"], args.runs, env),
            "dlrun check MODEL": time_process([py, "-m", "dlrun", "check", args.model], args.runs, env),
            f"dlrun check big ({args.layers} layers)": time_process([py, "-m", "dlrun", "check", big_path],
                                                                    args.runs, env),
        }
    base = procs["python -c pass"]["min_s"]
    result = {"parse_check": parse, "processes": procs,
              "targets": {"parse_check_s": 0.050, "check_wall_s": 0.150}}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    ms = lambda s: f"{s * 1e3:7.1f} ms"  # noqa: E731
    print(f"parse + check of a {parse['layers']}-layer file ({parse['lines']} lines):")
    print(f"  parser build (once per process, from Lark's cache): {ms(parse['parser_build_s'])}")
    print(f"  first parse + check:                                {ms(parse['first_parse_s'])}")
    print(f"  parse + check, min / median of {args.repeats}:             "
          f"{ms(parse['min_s'])} / {ms(parse['median_s'])}   (target <= 50 ms)")
    print(f"process wall min / median of {args.runs}, ratio of min to 'python -c pass', CPU min:")
    for name, r in procs.items():
        print(f"  {name:<34} {ms(r['min_s'])} / {ms(r['median_s'])}   x{r['min_s'] / base:4.1f}"
              f"   cpu {ms(r['cpu_min_s'])}" + (f"   exit {r['exit']}" if r["exit"] else ""))
    print(f"  target for dlrun check: <= 150 ms  (model: {os.path.relpath(args.model, REPO)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
