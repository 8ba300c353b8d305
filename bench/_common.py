"""Shared benchmark machinery: machine record, timing, peak memory in a fresh process, JSONL and tables.

Every (implementation, configuration) runs in its own subprocess: the script re-invokes itself with
``--one '<json spec>'``. The child builds its inputs, resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``), records RSS right before the timed call and ``ru_maxrss`` right after it,
and prints one result line. Peak extra memory = peak − baseline, so the inputs are not counted but
every temporary of the timed call is. The parent imports neither torch nor faiss, so the child's
``ru_maxrss`` (which starts from the parent's peak after exec) is never polluted by it.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_MARK = "@@BENCH_RESULT@@ "
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def quick_dir() -> Path:
    """Where ``--quick`` runs write: a temporary folder (``$ALIGNKIT_BENCH_QUICK_DIR`` to choose it), never
    ``bench/results``, whose files are the recorded numbers of BENCHMARKS.md."""
    return Path(os.environ.get("ALIGNKIT_BENCH_QUICK_DIR") or Path(tempfile.gettempdir()) / "alignkit-bench-quick")


def results_path(name: str, args: argparse.Namespace) -> Path:
    """``--out`` if given, else ``bench/results/<name>.jsonl`` (full runs) or ``quick_dir()/<name>.jsonl``."""
    if getattr(args, "out", None):
        return Path(args.out)
    return (quick_dir() if getattr(args, "quick", False) else RESULTS_DIR) / f"{name}.jsonl"


# ------------------------------------------------------------------------------------------ machine


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gb() -> float | None:
    kib = _meminfo("MemTotal")
    return None if kib is None else round(kib / 2**20, 1)


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def mem_available_bytes() -> int | None:
    kib = _meminfo("MemAvailable")
    return None if kib is None else kib * 1024


def machine_info(threads: int) -> dict[str, Any]:
    """CPU, cores, memory and library versions (read without importing torch or faiss)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "mem_total_gb": _mem_total_gb(),
        "load_avg_1m": os.getloadavg()[0],
        "threads": threads,
        "python": platform.python_version(),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "faiss": _version("faiss-cpu") or _version("faiss"),
        "alignkit": _version("alignkit"),
        "platform": platform.platform(),
    }


def set_threads(threads: int) -> None:
    """Pin torch (and faiss, if present) to ``threads`` threads. Called in the child."""
    import torch

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


# ------------------------------------------------------------------------------------------ memory


def rss_kib() -> int:
    """Current resident set size of this process, KiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS not found in /proc/self/status")


def peak_kib() -> int:
    """Peak resident set size (``ru_maxrss``; KiB on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def hwm_kib() -> int:
    """This address space's own peak RSS (VmHWM), KiB; unlike ``ru_maxrss`` it never includes the
    parent's peak inherited at exec."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("VmHWM not found in /proc/self/status")


def reset_peak() -> bool:
    """Reset the peak-RSS mark to the current RSS (Linux ≥ 4.0); False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------------ timing


def measure(call: Callable[[], Any], *, repeats: int = 3, budget_s: float = 20.0) -> dict[str, Any]:
    """Time ``call`` (best of up to ``repeats`` runs; no repeat once the elapsed time passes
    ``budget_s``) and its peak extra RSS over the baseline right before the first run."""
    gc.collect()
    was_reset = reset_peak()
    base = rss_kib()
    pre_peak = peak_kib()
    times: list[float] = []
    out: Any = None
    for _ in range(max(1, repeats)):
        out = None  # let the previous result go before the next run
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
        if sum(times) >= budget_s:
            break
    peak = peak_kib()
    if was_reset:  # ru_maxrss also covers the parent's peak at exec: it must not be what we read
        valid = peak <= hwm_kib() + 1024
    else:  # without a reset, a peak reached while building the inputs would hide the call's own
        valid = pre_peak <= base + 1024
    return {
        "seconds": min(times),
        "times": [round(t, 6) for t in times],
        "repeats": len(times),
        "rss_base_mb": base / 1024,
        "rss_peak_mb": peak / 1024,
        "peak_extra_mb": max(0, peak - base) / 1024,
        "peak_valid": valid,
        "value": out,
    }


class Stopwatch:
    """Named lap timer: ``with sw("train"): ...`` accumulates seconds per name."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}

    def __call__(self, name: str) -> _Lap:
        return _Lap(self, name)


class _Lap:
    def __init__(self, sw: Stopwatch, name: str) -> None:
        self.sw, self.name = sw, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.sw.laps[self.name] = self.sw.laps.get(self.name, 0.0) + time.perf_counter() - self.t0


# ------------------------------------------------------------------------------------------ subprocesses


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in _THREAD_VARS:
        env[var] = str(threads)
    return env


def run_isolated(script: str | Path, spec: dict[str, Any], *, threads: int, timeout: float | None = None) -> dict:
    """Run ``script --one <spec>`` in a fresh interpreter and return its result dict.

    A crash, a timeout or a kill (e.g. out of memory) comes back as ``status`` "failed" with the
    reason, so one bad configuration does not stop the run.
    """
    cmd = [sys.executable, str(script), "--one", json.dumps(spec), "--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(threads), timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "status": "failed", "error": f"timeout after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {**spec, "status": "failed", "error": f"exit code {proc.returncode}: " + " | ".join(tail)}


def child_main(spec_json: str, threads: int, runners: dict[str, Callable[[dict], dict]]) -> None:
    """Entry point of the child process: run ``runners[spec['impl']](spec)`` and print its result."""
    spec = json.loads(spec_json)
    set_threads(threads)
    result = runners[spec["impl"]](spec)
    print(_MARK + json.dumps({**spec, "status": "ok", **result}, default=_jsonable), flush=True)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


# ------------------------------------------------------------------------------------------ output


class Results:
    """JSON lines in ``bench/results/<name>.jsonl`` (overwritten per run; ``--quick`` runs write to
    :func:`quick_dir` instead): a header line with the machine and arguments, then one line per
    (implementation, configuration)."""

    def __init__(self, name: str, args: argparse.Namespace, notes: dict[str, Any] | None = None) -> None:
        self.path = results_path(name, args)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = []
        header = {
            "type": "header",
            "script": f"bench/{name}.py",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "argv": sys.argv[1:],
            "args": {k: v for k, v in vars(args).items() if k not in ("one", "out")},
            "machine": machine_info(args.threads),
            "notes": notes or {},
        }
        with open(self.path, "w") as fh:
            fh.write(json.dumps(header, default=_jsonable) + "\n")

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        self.rows.append(row)
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"type": "result", **row}, default=_jsonable) + "\n")
        return row


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, Callable[[dict], Any]]]) -> str:
    """A GitHub markdown table; each column is (header, row -> cell)."""
    cells = [[_cell(get(r)) for _, get in columns] for r in rows]
    head = [h for h, _ in columns]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def ok(row: dict[str, Any]) -> bool:
    return row.get("status") == "ok"


def field(key: str, fmt: str | None = None) -> Callable[[dict], Any]:
    """Column getter: the row's value (formatted with ``fmt``), or its status when not ok."""

    def get(row: dict[str, Any]) -> Any:
        if not ok(row):
            return row.get("status", "–")
        v = row.get(key)
        return format(v, fmt) if (fmt and v is not None) else v

    return get


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny configuration for a smoke check (seconds; results go to a temporary folder, not bench/results)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch / faiss / BLAS threads")
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs (fewer once a run is slow)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per subprocess")
    p.add_argument("--out", help="JSONL file to write (default: bench/results/<script>.jsonl; --quick: a temp folder)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one spec in this process
    return p


# ------------------------------------------------------------------------------------------ data


def chunk_bounds(n: int, chunk: int) -> Iterator[tuple[int, int, int]]:
    for i, start in enumerate(range(0, n, chunk)):
        yield i, start, min(n, start + chunk)


class LatentMixture:
    """Structured synthetic embeddings, the shape real ones have (unlike isotropic Gaussians).

    A latent z in R^latent_dim is drawn from a mixture of ``clusters`` Gaussians (centres N(0, I),
    within-cluster std ``within``); a view of it is ``z Wᵀ + noise·ε`` with a random W ∈ R^{d×latent_dim}
    (entries N(0, 1/latent_dim)) and isotropic ε ~ N(0, I_d). Everything is float32, seeded, and
    generated in chunks whose random streams depend only on (seed, chunk index).
    """

    def __init__(self, latent_dim: int = 32, clusters: int = 1000, within: float = 0.5, seed: int = 0) -> None:
        self.latent_dim, self.clusters, self.within, self.seed = latent_dim, clusters, within, seed
        rng = np.random.default_rng([seed, 0])
        self.centres = rng.standard_normal((clusters, latent_dim), dtype=np.float32)

    def describe(self) -> str:
        return (
            f"mixture of {self.clusters} Gaussian clusters (within-cluster std {self.within}) in a "
            f"{self.latent_dim}-d latent, mapped linearly to d dims plus isotropic noise; float32, seed {self.seed}"
        )

    def latent_chunk(self, index: int, m: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 1, index])
        labels = rng.integers(self.clusters, size=m)
        z = rng.standard_normal((m, self.latent_dim), dtype=np.float32)
        z *= np.float32(self.within)
        z += self.centres[labels]
        return z

    def projection(self, d: int, view: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 2, view])
        w = rng.standard_normal((self.latent_dim, d), dtype=np.float32)
        return w / np.float32(np.sqrt(self.latent_dim))

    def view_chunk(self, z: np.ndarray, w: np.ndarray, noise: float, index: int, view: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 3, view, index])
        x = rng.standard_normal((z.shape[0], w.shape[1]), dtype=np.float32)
        x *= np.float32(noise)
        x += z @ w
        return x

    def latent(self, n: int, *, chunk: int = 65536) -> np.ndarray:
        """n latent points, (n, latent_dim)."""
        z = np.empty((n, self.latent_dim), dtype=np.float32)
        for i, s, e in chunk_bounds(n, chunk):
            z[s:e] = self.latent_chunk(i, e - s)
        return z

    def views(
        self,
        n: int | np.ndarray,
        d: int | Sequence[int],
        noise: float | Sequence[float],
        *,
        first_view: int = 0,
        chunk: int = 65536,
    ) -> list[np.ndarray]:
        """Views of the same latent points (n of them, or the given (n, latent_dim) array): view v is
        (n, d[v]) with noise level ``noise[v]`` and projection number ``first_view + v``."""
        ds = [d] if isinstance(d, int) else list(d)
        noises = [float(noise)] * len(ds) if isinstance(noise, (int, float)) else [float(s) for s in noise]
        if len(noises) != len(ds):
            raise ValueError("give one noise level per view")
        z_all = n if isinstance(n, np.ndarray) else None
        rows = int(z_all.shape[0]) if z_all is not None else int(n)
        ws = [self.projection(dv, first_view + v) for v, dv in enumerate(ds)]
        out = [np.empty((rows, dv), dtype=np.float32) for dv in ds]
        for i, s, e in chunk_bounds(rows, chunk):
            z = z_all[s:e] if z_all is not None else self.latent_chunk(i, e - s)
            for v, w in enumerate(ws):
                out[v][s:e] = self.view_chunk(z, w, noises[v], i, first_view + v)
        return out


def bible_subset(folder: Path, n: int) -> dict[str, str]:
    """The first ``n`` bundled verses of each language as ``folder/bible-<lang>.tsv`` (columns ref, text), for the
    ``--quick`` runs of the pipeline benchmarks; returns ``{lang: data spec}``, the verse refs as ids."""
    from alignkit.data.spec import dataset_from_spec

    folder.mkdir(parents=True, exist_ok=True)
    specs = {}
    for lang in ("en", "es"):
        ds = dataset_from_spec(f"sample:bible-{lang}")
        texts = ds.items(0, min(n, len(ds)))
        lines = ["ref\ttext", *(f"{ref}\t{' '.join(t.split())}" for ref, t in zip(ds.ids, texts, strict=False))]
        path = folder / f"bible-{lang}.tsv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        specs[lang] = f"{path}#text,id=ref"
    return specs
