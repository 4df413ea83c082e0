"""Benchmark the zoo locally connected layer against Conv and every other implementation.

Each (case, implementation) runs in its own subprocess (`bench/worker.py`) so that peak
memory is that case's alone; a watchdog kills a child whose RSS passes the memory budget.
Ratios are to the same-shape Conv (keras Conv on TensorFlow) measured in the same run.

    python bench/run.py                       # full suite (20 min on 2 idle cores)
    python bench/run.py --quick               # 4 cases, 6 implementations (~5 min)
    python bench/run.py --cases L4_b32 --impls conv,zoo_tf,legacy1 --out bench/results

On a GPU machine with JAX and torch but no TensorFlow, the reference is Keras's Conv on
JAX (`conv_jax`), picked automatically:

    python bench/run.py --cases L4_b128,L5_b128,L6_b128 \
        --impls zoo_jax,flax_local,torch_unfold,zoo_torch,conv_torch --out bench/results-gpu
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import (
    CASES,
    GIB,
    IMPLS,
    MEMORY_LIMIT_BYTES,
    OTHER_BACKEND_IMPLS,
    QUICK_CASES,
    QUICK_IMPLS,
    predict,
    skip_reason,
)
from guard import run_guarded

WORKER = Path(__file__).resolve().parent / "worker.py"
MODES = ("fwd", "fwdbwd")


def run_child(case: str, impl: str, steps: int, timeout_s: float, modes: list[str]) -> dict:
    """Run one worker under the watchdog; a kill or a crash becomes a "failed" result."""
    command = [sys.executable, str(WORKER), "--case", case, "--impl", impl, "--steps", str(steps)]
    command += ["--modes", ",".join(modes)]
    stdout, stderr, killed = run_guarded(command, timeout_s, MEMORY_LIMIT_BYTES)
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    reason = killed or (stderr.strip().splitlines() or ["no output"])[-1]
    return {"case": case, "impl": impl, "status": "failed", "reason": reason[:300]}


def default_reference() -> str:
    """Keras's Conv on TensorFlow; on JAX (then torch) where TensorFlow is not installed."""
    for impl, package in (("conv", "tensorflow"), ("conv_jax", "jax"), ("conv_torch", "torch")):
        if importlib.util.find_spec(package):
            return impl
    raise SystemExit("None of tensorflow, jax, torch is installed: nothing to benchmark.")


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name, or None."""
    if not shutil.which("nvidia-smi"):
        return None
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return listing.stdout.splitlines()[0] if listing.returncode == 0 and listing.stdout else None


def add_ratios(results: list[dict], reference_impl: str) -> None:
    """Each result's time over the reference's (same case, same run), and the fraction of
    the streaming bandwidth its device measured that the layer's floor bytes take."""
    references = {
        r["case"]: r for r in results if r["impl"] == reference_impl and r["status"] == "ok"
    }
    for result in results:
        if result["status"] != "ok":
            continue
        reference = references.get(result["case"], {})
        for mode in MODES:
            timing = result.get(mode, {})
            if "time_ms" not in timing:
                continue
            if "time_ms" in reference.get(mode, {}):
                timing["ratio_to_reference"] = timing["time_ms"] / reference[mode]["time_ms"]
            if not result["impl"].startswith("conv"):
                seconds = timing["time_ms"] / 1e3
                gbs = CASES[result["case"]].min_bytes(mode) / seconds / 1e9
                timing["bandwidth_fraction"] = gbs / result["stream_gbs"]


def markdown(results: list[dict], reference_impl: str) -> str:
    ref = reference_impl
    lines = [
        f"| case | impl | fwd ms | fwd x {ref} | fwd+bwd ms | fwd+bwd x {ref} | fwd+bwd % of "
        "stream BW | peak RSS fwd+bwd GiB (fwd) | process base GiB | build s | trace fwd+bwd s "
        "| device |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        label = f"{r['case']} ({CASES[r['case']].describe()})"
        if r["status"] != "ok":
            lines.append(f"| {label} | {r['impl']} | {r['status']}: {r['reason']} |||||||||| ")
            continue
        cells = []
        for mode in MODES:
            m = r.get(mode, {})
            if "time_ms" in m:
                cells += [f"{m['time_ms']:.1f}", f"{m.get('ratio_to_reference', float('nan')):.2f}"]
            else:
                cells += [f"skipped: {m.get('skipped', '-')}", ""]
        fraction = r.get("fwdbwd", {}).get("bandwidth_fraction")
        cells.append("-" if fraction is None else f"{100 * fraction:.0f}%")
        peaks = [
            f"{r[mode]['peak_rss_bytes'] / GIB:.2f}" if "peak_rss_bytes" in r.get(mode, {}) else "-"
            for mode in ("fwdbwd", "fwd")
        ]
        trace = next(
            (f"{r[mode]['trace_s']:.2f}" for mode in ("fwdbwd", "fwd") if "trace_s" in r[mode]),
            "-",
        )
        lines.append(
            f"| {label} | {r['impl']} | {' | '.join(cells)} | {peaks[0]} ({peaks[1]}) "
            f"| {r['base_rss_bytes'] / GIB:.2f} | {r['build_s']:.2f} | {trace} "
            f"| {r['device']} ({r['stream_gbs']:.0f} GB/s) |"
        )
    return "\n".join(lines) + "\n"


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(
                ["lscpu"], capture_output=True, text=True
            ).stdout.splitlines()
            if line.startswith("Model name")
        ),
        platform.processor(),
    )
    versions = {}
    for package in ("tensorflow", "keras", "tf_keras", "jax", "flax", "torch"):
        try:
            from importlib.metadata import version

            versions[package] = version(package.replace("_", "-"))
        except Exception:
            versions[package] = "absent"
    return {
        "cpu": model,
        "gpu": gpu_name(),
        "cores": psutil.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / GIB, 1),
        "python": platform.python_version(),
        **versions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="comma-separated case names", default=None)
    parser.add_argument("--impls", help="comma-separated implementations", default=None)
    parser.add_argument("--quick", action="store_true", help="4 cases, 6 implementations")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mode (median)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per child")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument(
        "--reference",
        choices=["conv", "conv_jax", "conv_torch"],
        help="the same-shape Conv every ratio uses (default: TensorFlow's, else JAX's)",
    )
    args = parser.parse_args()
    cases = args.cases.split(",") if args.cases else (QUICK_CASES if args.quick else list(CASES))
    impls = args.impls.split(",") if args.impls else (QUICK_IMPLS if args.quick else IMPLS)
    known = IMPLS + OTHER_BACKEND_IMPLS
    unknown = sorted(set(impls) - set(known))
    if unknown:
        parser.error(f"unknown implementation(s) {unknown}; choose from {known}")
    unknown_cases = sorted(set(cases) - set(CASES))
    if unknown_cases:
        parser.error(f"unknown case(s) {unknown_cases}; choose from {list(CASES)}")
    reference = args.reference or default_reference()
    if reference not in impls:
        impls = [reference, *impls]
    gpu = gpu_name() is not None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    results, start = [], time.perf_counter()
    for case in cases:
        for impl in impls:
            skips = {mode: skip_reason(CASES[case], impl, mode, gpu) for mode in MODES}
            modes = [mode for mode in MODES if not skips[mode]]
            if modes:
                result = run_child(case, impl, args.steps, args.timeout, modes)
            else:
                result = {"case": case, "impl": impl, "status": "skipped", "reason": skips["fwd"]}
            for mode, reason in skips.items():
                if reason and result["status"] == "ok":
                    result[mode] = {"skipped": reason}
            result["prediction"] = {mode: predict(CASES[case], impl, mode) for mode in MODES}
            results.append(result)
            summary = (
                " ".join(
                    f"{mode} {result[mode].get('time_ms', float('nan')):.1f} ms" for mode in MODES
                )
                if result["status"] == "ok"
                else f"{result['status']}: {result['reason']}"
            )
            print(
                f"[{time.perf_counter() - start:6.0f}s] {case:11s} {impl:13s} {summary}", flush=True
            )
    add_ratios(results, reference)
    report = {
        "machine": machine(),
        "reference": reference,
        "command": " ".join(sys.argv),
        "wall_s": time.perf_counter() - start,
        "cases": {name: CASES[name].to_dict() for name in cases},
        "results": results,
    }
    (out / "results.json").write_text(json.dumps(report, indent=1))
    (out / "results.md").write_text(markdown(results, reference))
    print(markdown(results, reference))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'} in {report['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
