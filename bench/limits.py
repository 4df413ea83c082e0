"""What this machine can do right now: the FMA peak and the stream bandwidths.

The denominators of the results' "fraction of the limit" figures and floors (how many
GFLOP/s a compute-bound pass can reach, how fast a 251 MB kernel can be streamed), from
`limits.cc`, built with the system C++ compiler (`$CXX`, default `g++`) and run on every
core. On a shared VM they move from day to day and minute to minute, so run it beside the
timings it explains. Also reported: the share of the run the hypervisor gave to others
(`steal` in /proc/stat), which is how a noisy neighbour shows from the inside.

    python bench/limits.py                    # 5 repeats over 256 MiB arrays, a few seconds
    python bench/limits.py --repeats 9 --march haswell --json bench/results/limits.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from zoo import machine  # noqa: E402

SOURCE = HERE / "limits.cc"
FLAGS = ("-O3", "-ffp-contract=fast", "-fopenmp")


def build(march: str, folder: Path) -> Path:
    name, compiler = machine.compiler()
    if compiler is None:
        sys.exit(f"bench/limits.py needs a C++ compiler: {name!r} is not on PATH (set $CXX)")
    binary = folder / "limits"
    subprocess.run(
        [compiler, *FLAGS, f"-march={march}", str(SOURCE), "-o", str(binary)], check=True
    )
    return binary


def cpu_ticks() -> tuple[int, int]:
    """(all, steal) jiffies since boot, 0 where /proc/stat is missing."""
    stat = Path("/proc/stat")
    if not stat.exists():
        return 0, 0
    fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
    return sum(fields), fields[7] if len(fields) > 7 else 0


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="size of each array")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--march", default="native", help="GCC -march (haswell: the AVX2 code)")
    parser.add_argument("--json", type=Path, help="write the results here as well")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        binary = build(args.march, Path(folder))
        env = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count())}
        total0, steal0 = cpu_ticks()
        out = subprocess.run(
            [str(binary), str(args.mib), str(args.repeats)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
        total1, steal1 = cpu_ticks()
    result = json.loads(out)
    result["steal_percent"] = round(100 * (steal1 - steal0) / max(total1 - total0, 1), 1)
    result["machine"] = machine.describe()
    result["march"] = args.march
    print(
        f"machine: {result['machine']}; -march={args.march}, {result['lanes']}-float vectors, "
        f"{result['threads']} threads, {result['mib']} MiB arrays, {args.repeats} repeats"
    )
    print("| limit | best | median |\n|---|---|---|")
    for key, label in [
        ("fma_gflops", "FMA peak, GFLOP/s"),
        ("read_gbs", "stream read, GB/s"),
        ("write_gbs", "stream write, GB/s (plus the read for ownership)"),
        ("nontemporal_write_gbs", "non-temporal write, GB/s"),
    ]:
        print(f"| {label} | {result[key]['best']:.1f} | {result[key]['median']:.1f} |")
    print(f"CPU time stolen by the hypervisor during the run: {result['steal_percent']} %")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
