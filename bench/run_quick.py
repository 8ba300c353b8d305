"""Every benchmark script of bench/ in its ``--quick`` mode, one after another: a smoke check (``make bench``).

Each script runs in its own process from the repository root; its tables are printed as it goes and its JSONL goes
to a temporary folder (``_common.quick_dir``), never over the recorded ``bench/results/*.jsonl``. Quick numbers
are for checking that the scripts still run, not for reporting. Exits non-zero if any script failed, after running
the others.

    .venv/bin/python bench/run_quick.py [--only knn_mutual,cka] [--timeout 300]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    """The benchmark scripts: every ``bench/*.py`` except helpers (``_*.py``) and this runner."""
    return sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_") and p.name != Path(__file__).name)


#: Scripts whose --quick run gates on timing ratios: single-threaded on both sides, as the recorded tables are (with
#: two threads, torch's and OpenBLAS's pools contend and a ratio swung from 1.2 to 2.4 between two runs in CI).
GATED = {"peers"}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help="comma-separated script names (without .py); default: all")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per script")
    args = p.parse_args()
    todo = scripts()
    if args.only:
        wanted = {s.strip().removesuffix(".py") for s in args.only.split(",") if s.strip()}
        unknown = sorted(wanted - {s.stem for s in todo})
        if unknown:
            p.error(f"unknown script(s) {unknown}; known: {[s.stem for s in todo]}")
        todo = [s for s in todo if s.stem in wanted]
    # no download bars from model loading in the log
    env = {**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    summary: list[tuple[str, float, str]] = []
    t_all = time.perf_counter()
    for script in todo:
        extra, script_env = (["--threads", "1"], {**env, **ONE_THREAD}) if script.stem in GATED else ([], env)
        print(f"\n=== bench/{script.name} --quick {' '.join(extra)}", flush=True)
        t0 = time.perf_counter()
        try:
            code = subprocess.run(
                [sys.executable, str(script), "--quick", *extra], cwd=HERE.parent, env=script_env, timeout=args.timeout
            ).returncode
            status = "ok" if code == 0 else f"failed (exit code {code})"
        except subprocess.TimeoutExpired:
            status = f"failed (timeout after {args.timeout:.0f} s)"
        summary.append((script.stem, time.perf_counter() - t0, status))
    total = time.perf_counter() - t_all
    width = max(len(name) for name, _, _ in summary)
    print(f"\n{'script'.ljust(width)}  seconds  status")
    for name, seconds, status in summary:
        print(f"{name.ljust(width)}  {seconds:7.1f}  {status}")
    print(f"{'total'.ljust(width)}  {total:7.1f}")
    failed = [name for name, _, status in summary if status != "ok"]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
