"""The fused kernel's three passes alone, this checkout's source vs a git revision's.

Both sources are compiled with the layer's own flags (`zoo.layers.fused.FLAGS`) into a
scratch folder and called from NumPy on the same arrays, round after round in one process,
so each round compares calls made seconds apart. Reported per pass (forward, kernel
gradient, input gradient): min and median ms, GFLOP/s at the min, the ratio of the mins and
the median of the per-round ratios (the revision's time over this one's: the steadier figure
on a noisy host), and the largest difference between the two results.

Sources before the batch-major interface (outputs and upstream gradients `(P, F, B)`, no
bias) are fed their own layout and their outputs turned for the comparison; sources with it
run the forward pass without a bias (so both give the same bits) and the kernel gradient
with the bias gradient, as the layer calls them.

    python bench/kernel.py --baseline 7b4b6c8 --cases L4_b32,L5_b32,L6_b32,1d_b32 --rounds 9
    python bench/kernel.py --baseline 7b4b6c8 --march haswell   # both built for AVX2 + FMA
    python bench/kernel.py --baseline HEAD --baseline-march haswell   # AVX-512 vs AVX2, one source
    OMP_NUM_THREADS=1 python bench/kernel.py --baseline HEAD --passes input_gradient   # one core

`--march` replaces `-march=native` (for both builds, unless `--baseline-march` gives the
revision's its own), so an AVX-512 machine can also time the AVX2 build.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cases import CASES  # noqa: E402

from zoo import machine  # noqa: E402
from zoo.layers import fused  # noqa: E402

PASSES = ("zoo_lc_forward", "zoo_lc_kernel_gradient", "zoo_lc_input_gradient")
PASS_NAMES = [p.removeprefix("zoo_lc_") for p in PASSES]  # as --passes names them


def build(source: str, target: Path, march: str = "native") -> ctypes.CDLL:
    path = target.with_suffix(".cc")
    path.write_text(source)
    name, compiler = machine.compiler()
    if compiler is None:
        sys.exit(f"bench/kernel.py needs a C++ compiler: {name!r} is not on PATH (set $CXX)")
    flags = [f"-march={march}" if f == "-march=native" else f for f in fused.FLAGS]
    subprocess.run([compiler, *flags, str(path), "-o", str(target)], check=True)
    return ctypes.CDLL(str(target))


def batch_major(source: str) -> bool:
    """Whether `source` takes outputs and upstream gradients `(B, P, F)`, with a bias."""
    return "const float* bias" in source


def arrays(case, rng) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The geometry vector and the pass operands of `case` (valid padding, no dilation)."""
    two_d = (lambda v: (1, *v)) if case.rank == 1 else tuple
    (h, w), (oh, ow) = two_d(case.spatial), two_d(case.output)
    (kh, kw), (sh, sw) = two_d(case.kernel), two_d(case.strides)
    c, f, b = case.channels, case.filters, case.batch
    geo = np.array([b, h, w, c, oh, ow, kh, kw, sh, sw, 1, 1, f], np.int64)
    p, k = oh * ow, kh * kw * c

    def normal(*shape):  # 64-byte aligned, as the layer's TensorFlow tensors are
        array = fused.aligned_empty(shape)
        array[...] = rng.standard_normal(shape, np.float32)
        return array

    dy = normal(b, p, f)
    innermost = fused.aligned_empty((p, f, b))
    innermost[...] = dy.transpose(1, 2, 0)
    return geo, {
        "x": normal(h, w, c, b),
        "w": normal(p, k, f),
        "bias": normal(p, f),
        "dy": dy,
        "dy_innermost": innermost,
    }


def operands(a: dict[str, np.ndarray], new: bool) -> dict[str, tuple[tuple, np.ndarray]]:
    """pass -> (its arrays after the geometry, None for a null pointer; the result compared)
    for one interface: the batch-major one (`new`) or the one before it."""
    out = fused.aligned_empty
    dy = a["dy"] if new else a["dy_innermost"]
    y, dw, dx = out(dy.shape), out(a["w"].shape), out(a["x"].shape)
    passes = {
        "zoo_lc_forward": ((a["x"], a["w"], *([None] if new else []), y), y),
        "zoo_lc_kernel_gradient": ((a["x"], dy, dw, *([out(a["bias"].shape)] if new else [])), dw),
        "zoo_lc_input_gradient": ((dy, a["w"], dx), dx),
    }
    if not new:  # its outputs (P, F, B), compared as (B, P, F)
        passes["zoo_lc_forward"] = (passes["zoo_lc_forward"][0], y.transpose(2, 0, 1))
    return passes


def pointer(array: np.ndarray | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if array is None else array.ctypes.data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision of the other source")
    parser.add_argument("--cases", default="L4_b32")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument(
        "--passes",
        default=",".join(PASS_NAMES),
        help="comma-separated passes to time (forward, kernel_gradient, input_gradient)",
    )
    parser.add_argument("--march", default="native", help="GCC -march for both builds")
    parser.add_argument("--baseline-march", help="GCC -march of the revision's build (--march)")
    parser.add_argument("--json", help="write the results here as well")
    args = parser.parse_args()
    names = args.passes.split(",")
    if unknown := set(names) - set(PASS_NAMES):
        parser.error(f"--passes: unknown {sorted(unknown)}; choose from {','.join(PASS_NAMES)}")
    passes = [f"zoo_lc_{name}" for name in names]
    marches = (args.march, args.baseline_march or args.march)
    relative = fused.SOURCE.relative_to(ROOT)
    sources = {"this": fused.SOURCE.read_text()}
    sources[args.baseline] = subprocess.run(
        ["git", "show", f"{args.baseline}:{relative}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    by_name = CASES
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        libraries = {
            version: build(source, Path(scratch) / f"{label}.so", march)
            for (version, source), label, march in zip(
                sources.items(), ("this", "baseline"), marches, strict=True
            )
        }
        rng = np.random.default_rng(0)
        threads = libraries["this"].omp_get_max_threads()  # OMP_NUM_THREADS, else the cores
        print(
            f"Machine: {machine.describe()}; this built with -march={marches[0]}, "
            f"{args.baseline} with -march={marches[1]}; {threads} OpenMP threads"
        )
        for name in args.cases.split(","):
            case = by_name[name]
            if case.padding != "valid":
                raise SystemExit(f"{name}: only valid padding is timed here")
            geo, a = arrays(case, rng)
            calls = {v: operands(a, batch_major(sources[v])) for v in libraries}
            flops = 2 * case.positions * case.patch_size * case.filters * case.batch
            times = {(v, p): [] for v in libraries for p in passes}
            for _ in range(args.rounds):
                for version, library in libraries.items():
                    for pass_ in passes:
                        arrays_ = calls[version][pass_][0]
                        pointers = [pointer(geo), *map(pointer, arrays_)]
                        start = time.perf_counter()
                        getattr(library, pass_)(*pointers)
                        times[(version, pass_)].append(time.perf_counter() - start)
            for pass_ in passes:
                row = {"case": name, "pass": pass_.removeprefix("zoo_lc_")}
                for version in libraries:
                    spent = times[(version, pass_)]
                    label = "this" if version == "this" else "baseline"
                    row[f"{label}_min_ms"] = 1000 * min(spent)
                    row[f"{label}_median_ms"] = 1000 * statistics.median(spent)
                    row[f"{label}_gflops"] = flops / min(spent) / 1e9
                row["speedup"] = row["baseline_min_ms"] / row["this_min_ms"]
                row["speedup_per_round"] = statistics.median(
                    b / t
                    for b, t in zip(
                        times[(args.baseline, pass_)], times[("this", pass_)], strict=True
                    )
                )
                got, want = calls["this"][pass_][1], calls[args.baseline][pass_][1]
                row["max_difference"] = float(np.max(np.abs(got - want)))
                row["scale"] = float(np.max(np.abs(got)))
                results.append(row)
                print(
                    f"{name:10s} {row['pass']:16s} this {row['this_min_ms']:7.1f} / "
                    f"{row['this_median_ms']:7.1f} ms ({row['this_gflops']:5.1f} GFLOP/s)   "
                    f"{args.baseline} {row['baseline_min_ms']:7.1f} / "
                    f"{row['baseline_median_ms']:7.1f} ms   x{row['speedup']:.2f} "
                    f"(per round x{row['speedup_per_round']:.2f})   "
                    f"max diff {row['max_difference']:.1e} of {row['scale']:.1e}"
                )
    if args.json:
        record = {
            "machine": machine.describe(),
            "march": marches[0],
            "baseline_march": marches[1],
            "baseline": args.baseline,
            "threads": threads,
            "rows": results,
        }
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
