"""A compiled kernel for scan, measured against the interpreted tree (issue 18, second design).

    python -m benchmarks.kernel [--cdrs 90000] [--seed 2] [--rounds 2] [--keep DIR]

The repository's pure hot modules (the detectors and the engine's per-record path) are copied
into a scratch tree and compiled there with mypyc (from the venv's mypy; gcc and the Python
headers from Debian: `apt-get install gcc python3-dev`, which this command asks for when either
is missing). The source tree is never
touched. Then ``dialwatch scan`` runs on one scenario file, alternately from the source tree
and from the compiled one (A, B, B, A, ...), and the command prints, for each run, the CPU
seconds of the whole process (user + system, start-up included), its peak RSS and its alerts,
then the compiled/interpreted CPU ratio and whether the alerts are identical (every field but
``detected_at``, the wall clock). A difference in alerts exits 1.

Modules mypyc cannot compile are left out and named (``detectors/contact_bloom.py``: mypyc
1.x fails with an internal error on ``sum()`` over a ``bytearray``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
MYPYC = Path(sys.executable).with_name("mypyc")
EXCLUDED = {"detectors/contact_bloom.py": "mypyc internal error on sum() over a bytearray"}
STREAMS_HOT = (
    "streams/engine.py",
    "streams/cdr.py",
    "streams/reorder.py",
    "streams/derived.py",
    "streams/episodes.py",
    "streams/batches.py",
    "streams/items.py",
    "streams/instants.py",
    "streams/fastscan.py",
    "streams/files.py",
    "streams/scan.py",
)


def hot_modules() -> list[str]:
    detectors = sorted(f"detectors/{p.name}" for p in (ROOT / "detectors").glob("*.py"))
    return [m for m in (*detectors, *STREAMS_HOT) if m not in EXCLUDED]


def build(tree: Path) -> float:
    """Copy the repository's packages into ``tree`` and compile the hot modules there."""
    skip = shutil.ignore_patterns("__pycache__")
    for package in ("detectors", "streams", "config"):
        shutil.copytree(ROOT / package, tree / package, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    if not MYPYC.exists():
        sys.exit(f"kernel: {MYPYC} is missing; run `bash deploy/bootstrap.sh --test`")
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if shutil.which("gcc") is None or not headers.exists():
        sys.exit("kernel: needs gcc and the Python headers: apt-get install gcc python3-dev")
    started = time.monotonic()
    done = subprocess.run(
        [str(MYPYC), *hot_modules()], cwd=tree, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"kernel: mypyc failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return time.monotonic() - started


def scenario(path: Path, cdrs: int, seed: int) -> int:
    # About 14.4 CDRs per subscriber in the 12-hour scenario day.
    subscribers = max(500, cdrs * 10 // 144)
    argv = [sys.executable, "-m", "streams", "simulate", "--scenario", "--seed", str(seed)]
    argv += ["--subscribers", str(subscribers), "--out", str(path)]
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
    with path.open("rb") as lines:
        return sum(1 for _ in lines)


def scan(tree: Path, path: Path) -> tuple[float, float, list[bytes]]:
    """CPU seconds and peak RSS (MB) of one whole scan process, and its alerts."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "streams", "scan", str(path)],
            cwd=tree,
            env=env,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            sys.exit(f"kernel: scan from {tree} exited {child.returncode}")
        out.seek(0)
        lines = out.read().splitlines()
    alerts = []
    for line in lines:
        alert = orjson.loads(line)
        alert.pop("detected_at", None)
        alerts.append(orjson.dumps(alert, option=orjson.OPT_SORT_KEYS))
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, alerts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernel", description=__doc__)
    parser.add_argument("--cdrs", type=int, default=90_000, help="about this many records")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="A,B,B,A pairs")
    parser.add_argument("--keep", type=Path, help="build the compiled tree here and keep it")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="dialwatch-kernel-"))
    tree = args.keep or work / "tree"
    tree.mkdir(parents=True, exist_ok=True)
    try:
        seconds = build(tree)
        print(f"compiled {len(hot_modules())} modules with mypyc in {seconds:.1f} s", flush=True)
        for module, why in EXCLUDED.items():
            print(f"  left interpreted: {module} ({why})")
        path = work / "scenario.jsonl"
        records = scenario(path, args.cdrs, args.seed)
        print(f"scenario seed {args.seed}: {records:,} CDRs", flush=True)
        load = os.getloadavg()[0]
        cpu: dict[str, list[float]] = {"interpreted": [], "compiled": []}
        digests: set[str] = set()
        order = ["interpreted", "compiled", "compiled", "interpreted"] * args.rounds
        for name in order:
            used, rss, alerts = scan(ROOT if name == "interpreted" else tree, path)
            digest = hashlib.sha256(b"\n".join(alerts)).hexdigest()[:12]
            digests.add(digest)
            cpu[name].append(used)
            print(
                f"{name:12s} cpu {used:6.2f} s  {used / records * 1e6:6.1f} us/CDR  "
                f"peak RSS {rss:6.1f} MB  {len(alerts)} alerts  {digest}",
                flush=True,
            )
        ratio = sum(cpu["compiled"]) / sum(cpu["interpreted"])
        print(f"compiled / interpreted CPU per CDR: x{ratio:.2f} (load {load:.1f} at start)")
        same = len(digests) == 1
        print("alerts identical in every run" if same else "ALERTS DIFFER between runs")
        return 0 if same else 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
