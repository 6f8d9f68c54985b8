"""`make bench`: run the benchmarks of issue 5 in sequence, print a summary table and write
the figures to `.bench/results.json` (merged with earlier runs, so `--only` updates one part).

    python -m tests.bench                                  # all (about 12-15 minutes)
    python -m tests.bench --only pipeline,detection        # pipeline|detection|poller|storage|qc

Benchmarks measure; they assert nothing about speed. The servers (Kafka, FerretDB, MinIO) must
run (`make bench` starts them through `deploy.localinfra run`); the stack's ports 8080-8111 must
be free (the benchmarks wait a bounded time for other runs to end, then report them as busy).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.bench import (  # noqa: E402
    common,
    detection_bench,
    pipeline_bench,
    poller_bench,
    store_bench,
)

ALL = ("pipeline", "detection", "poller", "storage", "qc", "store")
RESULTS = common.BENCH_DIR / "results.json"


def run_storage(args: argparse.Namespace) -> dict[str, Any]:
    load = common.wait_for_low_load(args.load_threshold, args.load_wait_s, "storage")
    cmd = [sys.executable, "-m", "tests.bench.storage_bench", "--size-mib", str(args.storage_mib)]
    started = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.storage_timeout_s
    )
    text = proc.stdout + proc.stderr
    print(text.strip(), flush=True)
    out: dict[str, Any] = {
        "command": " ".join(cmd[1:]),
        "exit_code": proc.returncode,
        "wall_s": round(time.monotonic() - started, 1),
    }
    if m := re.search(r"re-hosted (\d+) MiB in ([\d.]+) s = ([\d.]+) MiB/s", text):
        out.update(size_mib=int(m[1]), seconds=float(m[2]), mib_per_s=float(m[3]))
    if m := re.search(r"peak RSS: (\d+) MiB \(after imports and connect: (\d+) MiB\)", text):
        out.update(peak_rss_mib=int(m[1]), rss_after_imports_mib=int(m[2]))
    if m := re.search(r"probe: (.*)", text):
        out["probe"] = m[1].strip()
    if proc.returncode != 0:
        out["error"] = text.strip().splitlines()[-1] if text.strip() else "failed"
    out["conditions"] = {"load": load, "load_after": common.load_note()}
    return out


def run_qc(args: argparse.Namespace) -> dict[str, Any]:
    load = common.wait_for_low_load(args.load_threshold, args.load_wait_s, "qc")
    cmd = [sys.executable, "-m", "tests.bench.qc_bench", "--json", "--repeat", str(args.qc_repeat)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.qc_timeout_s)
    if proc.returncode != 0:
        return {"command": " ".join(cmd[1:]), "error": (proc.stderr or proc.stdout).strip()[-2000:]}
    data = json.loads(proc.stdout)
    return {
        "command": " ".join(cmd[1:]),
        **data,
        "conditions": {"load": load, "load_after": common.load_note()},
    }


RUNNERS = {
    "pipeline": pipeline_bench.run,
    "detection": detection_bench.run,
    "poller": poller_bench.run,
    "storage": run_storage,
    "qc": run_qc,
    "store": store_bench.run,
}


def fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(benchmark, figure, value, target) for the summary table."""
    out: list[tuple[str, str, str, str]] = []
    for name in ALL:
        r = results.get(name)
        if r is None:
            continue
        if "error" in r and len(r) <= 3:
            out.append((name, "NOT MEASURED", r["error"][:70], ""))
            continue
        if name == "pipeline":
            s = r.get("saturation", {})
            history = (r.get("conditions") or {}).get("history") or {}
            if history:
                out.append(("pipeline", "history preloaded", f"{history.get('rows')} jobs", ""))
            out += [
                (
                    "pipeline",
                    f"sustained jobs/s ({s.get('concurrency')} clients, {s.get('window_s')} s)",
                    fmt(s.get("jobs_per_s")),
                    "100",
                ),
                (
                    "pipeline",
                    "overhead p50 / p99 at saturation",
                    f"{fmt(s.get('overhead_s', {}).get('p50'), ' s')} / "
                    f"{fmt(s.get('overhead_s', {}).get('p99'), ' s')}",
                    "",
                ),
            ]
            for f in r.get("fixed_rates", {}).values():
                out += [
                    (
                        "pipeline",
                        f"overhead p50 / p99 at {f.get('offered_rate_jobs_per_s')} jobs/s",
                        f"{fmt(f.get('overhead_s', {}).get('p50'), ' s', 3)} / "
                        f"{fmt(f.get('overhead_s', {}).get('p99'), ' s', 3)}",
                        "p99 < 0.25 s",
                    ),
                    (
                        "pipeline",
                        f"completed at {f.get('offered_rate_jobs_per_s')} jobs/s",
                        f"{f.get('completed')}/{f.get('offered_jobs')}",
                        "",
                    ),
                ]
        elif name == "detection":
            for label in ("webhook", "polling", "naive_5s"):
                g = r.get(label, {})
                d = g.get("detection_delay_s", {})
                out.append(
                    (
                        "detection",
                        f"{label}: delay p50 / p99 / max",
                        f"{fmt(d.get('p50'), ' s')} / {fmt(d.get('p99'), ' s')} / "
                        f"{fmt(d.get('max'), ' s')}",
                        "webhook p99 < 1 s" if label == "webhook" else "",
                    )
                )
                out.append(
                    (
                        "detection",
                        f"{label}: status calls per job",
                        f"{fmt(g.get('status_calls_per_job'))}"
                        + (
                            f" ({fmt(g.get('fewer_calls_than_naive_x'))}x fewer)"
                            if g.get("fewer_calls_than_naive_x")
                            else ""
                        ),
                        ">= 3x fewer than naive" if label != "naive_5s" else "",
                    )
                )
        elif name == "poller":
            out += [
                (
                    "poller",
                    f"RSS with {r.get('tasks')} tasks (window max / whole-run max)",
                    f"{fmt(r.get('rss_mib_window', {}).get('max'), ' MiB', 0)} / "
                    f"{fmt(r.get('rss_mib_max_whole_run'), ' MiB', 0)}",
                    "< 300 MB",
                ),
                (
                    "poller",
                    "CPU % of one core (window / whole run)",
                    f"{fmt(r.get('cpu_pct_of_one_core_window'), '%', 1)} / "
                    f"{fmt(r.get('cpu_pct_of_one_core_whole_run'), '%', 1)}",
                    "",
                ),
                (
                    "poller",
                    "status calls/s in the window",
                    fmt(r.get("status_calls_per_s_window")),
                    "",
                ),
            ]
        elif name == "storage":
            out += [
                (
                    "storage",
                    f"re-host {r.get('size_mib')} MiB: peak RSS",
                    fmt(r.get("peak_rss_mib"), " MiB"),
                    "< 150 MB",
                ),
                ("storage", "throughput", fmt(r.get("mib_per_s"), " MiB/s"), ""),
            ]
        elif name == "qc":
            for check, row in r.get("checks", {}).items():
                out.append(
                    (
                        "qc",
                        f"{check}: precision / recall",
                        f"{fmt(row.get('precision'))} / {fmt(row.get('recall'))}",
                        "",
                    )
                )
            for scene, t in r.get("hd_candidate", {}).items():
                out.append(
                    (
                        "qc",
                        f"5 s 720p: {scene[:32]}",
                        f"{fmt(t.get('seconds_median'), ' s')} median, "
                        f"{fmt(t.get('peak_rss_mb'), ' MB', 0)} peak RSS",
                        "1.2-1.5 s, 108 MB",
                    )
                )
        elif name == "store":
            out += store_bench.summary_rows(r)
        if "error" in r:
            out.append((name, "error", str(r["error"])[:70], ""))
        load = r.get("conditions", {}).get("load", {})
        if isinstance(load, dict) and load.get("load_at_start"):
            out.append(
                (
                    name,
                    "load avg at start (1/5/15 min)",
                    " ".join(map(str, load["load_at_start"])),
                    "",
                )
            )
    return out


def print_table(results: dict[str, Any]) -> None:
    table = rows(results)
    widths = [
        max(len(r[i]) for r in [*table, ("benchmark", "figure", "value", "target")])
        for i in range(4)
    ]
    header = ("benchmark", "figure", "value", "target")
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}"
    )
    parser.add_argument("--storage-mib", type=int, default=1024)
    parser.add_argument("--storage-timeout-s", type=float, default=900)
    parser.add_argument("--qc-repeat", type=int, default=3)
    parser.add_argument("--qc-timeout-s", type=float, default=900)
    pipeline_bench.add_arguments(parser)
    detection_bench.add_arguments(parser)
    poller_bench.add_arguments(parser)
    store_bench.add_arguments(parser)
    common.add_common_arguments(parser)
    args = parser.parse_args()
    selected = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(selected) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(ALL)}")

    common.BENCH_DIR.mkdir(exist_ok=True)
    previous: dict[str, Any] = {}
    if RESULTS.exists():
        try:
            previous = json.loads(RESULTS.read_text())
        except ValueError:
            previous = {}
    results: dict[str, Any] = previous.get("results", {})
    fresh: dict[str, Any] = {}
    for name in ALL:
        if name not in selected:
            continue
        print(f"\n=== {name} === (load {common.load_note()})", flush=True)
        started = time.time()
        try:
            fresh[name] = RUNNERS[name](args)
        except Exception as exc:
            traceback.print_exc()
            fresh[name] = {"error": f"{type(exc).__name__}: {exc}"}
        fresh[name]["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        fresh[name]["duration_s"] = round(time.time() - started, 1)
        results[name] = fresh[name]
        RESULTS.write_text(
            json.dumps({"machine": machine(), "results": results}, indent=2, default=str)
        )
    print_table(fresh)
    print(f"\nfigures written to {RESULTS.relative_to(ROOT)}")
    return 0


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "note": "2-core machine shared with other work; see each benchmark's load",
    }


if __name__ == "__main__":
    raise SystemExit(main())
