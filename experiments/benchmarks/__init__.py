"""The benchmark workloads of ``experiments.bench``: scorelab against the course's numpy code.

Each workload is a function ``(options, repeats) -> (result, fns)`` of plain arguments
(`Options`: sizes, hyperparameters, seed): ``result`` is its JSON-ready figures and checks,
``fns`` the timed calls by implementation name (``scorelab``'s is what ``--profile`` traces).
`run` runs one and adds the machine's description; `format_report` is the text the command
prints. The timing itself (interleaved rounds, medians) is `timing`'s.
"""

from __future__ import annotations

from typing import Any

from experiments.benchmarks import ensemble, gradcheck, sweep, timing, train
from experiments.benchmarks.options import Options

BENCHES = {
    "train": train.bench_train,
    "sweep": sweep.bench_sweep,
    "ensemble": ensemble.bench_ensemble,
    "gradcheck": gradcheck.bench_gradcheck,
    "two_layer": train.bench_two_layer,
}
WORKLOADS = tuple(BENCHES)

# The workload-specific entries `format_report` prints, in this order, where present.
REPORTED = (
    "loss_after_2_epochs",
    "scorelab_over_numpy",
    "cold_scorelab_over_numpy",
    "numpy_over_scorelab",
    "products_gflop",
    "peak_gflops",
    "floor_seconds",
    "numpy_over_floor",
    "scorelab_over_wide_matmul",
    "max_abs_error",
    "grades",
)


def run(
    workload: str, repeats: int, profile: bool = False, options: Options | None = None
) -> dict[str, Any]:
    """Runs one workload; returns the JSON-ready result dict (with ``profile`` if asked).

    ``options`` defaults to `Options()` (the bench's flag defaults).
    """
    if workload not in BENCHES:
        raise ValueError(f"unknown workload {workload!r}; valid: {', '.join(WORKLOADS)}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    result, fns = BENCHES[workload](options or Options(), repeats)
    if profile:
        result["profile"] = timing.profile_ops(fns["scorelab"])
    return {
        "workload": workload,
        **result,
        "device": timing.device_info(),
        "blas": timing.blas_info(),
        "repeats": repeats,
    }


def format_table(result: dict[str, Any]) -> str:
    """The per-implementation medians as an aligned text table, fastest first."""
    secs, cold = result["seconds"], result.get("cold_seconds", {})
    lines = [f"{result['workload']}: {result['shapes']}  on {result['device']}"]
    lines.append(f"  {'':24s} {'warm':>9s}   {'cold':>9s}")
    for name, s in sorted(secs.items(), key=lambda kv: kv[1]):
        compile_s = result.get("compile_seconds", {}).get(name)
        extra = f"  (compile {compile_s:.2f} s)" if compile_s is not None else ""
        c = f"{cold[name]:9.4f} s" if name in cold else ""
        lines.append(f"  {name:24s} {s:9.4f} s {c:>11s}{extra}")
    return "\n".join(lines)


def format_report(result: dict[str, Any]) -> str:
    """`format_table`, then the workload's checks and ratios, the BLAS and the profile."""
    lines = [format_table(result)]
    lines += [f"  {key}: {result[key]}" for key in REPORTED if key in result]
    lines.append(f"  blas: {result['blas']}")
    if "profile" in result:
        lines.append(
            "  scorelab per call, by XLA op (thread time; ops on different cores overlap):"
        )
        for row in result["profile"]:
            lines.append(f"    {row['ms']:8.2f} ms  x{row['count']:<6g} {row['op']}")
    return "\n".join(lines)
