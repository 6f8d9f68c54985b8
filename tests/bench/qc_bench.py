"""QC benchmark: precision and recall per check over the labelled synthetic set, then time and
peak memory of scoring one 5 s 1280x720 24 fps candidate (in a fresh process, so the peak RSS
is the candidate's own, interpreter and libraries included).

    python -m tests.bench.qc_bench [--repeat 3] [--json]

The bar from the handout (`qc-offline.md`): 1.2-1.5 s and 108 MB for a whole pass.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.qc.checks import run_checks, score_clip  # noqa: E402
from services.qc.logic import CHECK_ORDER, CheckStatus, QcRules  # noqa: E402
from tests.qc_clips import ClipSpec, expectation, labelled_set, write_clip  # noqa: E402

HD_SCENES = {
    "studio (emulator-like: gradient, disc, face)": ClipSpec("studio", 1280, 720, 5.0, 24),
    "textured pan + face (worst case for Haar)": ClipSpec("face_steady", 1280, 720, 5.0, 24),
}


def precision_recall(workdir: Path) -> dict[str, dict[str, float]]:
    """Per check: a clip is positive when it is labelled with the defect, flagged when the
    check fails it."""
    counts = {name: {"tp": 0, "fp": 0, "fn": 0, "tn": 0} for name in CHECK_ORDER}
    rules = QcRules()
    for clip in labelled_set():
        path = write_clip(clip.spec, workdir / f"{clip.name}.mp4")
        expected = clip.expected.model_copy(update={"prompt": clip.prompt})
        results = {r.name: r.status for r in run_checks(path, expected, rules)}
        for name in CHECK_ORDER:
            if name not in results or results[name] is CheckStatus.SKIPPED:
                continue
            flagged, labelled = results[name] is CheckStatus.FAIL, name in clip.defects
            key = ("tp" if labelled else "fp") if flagged else ("fn" if labelled else "tn")
            counts[name][key] += 1
    table = {}
    for name, c in counts.items():
        if sum(c.values()) == 0:
            continue
        precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else float("nan")
        recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else float("nan")
        table[name] = {**c, "precision": precision, "recall": recall}
    return table


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the
    parent through fork and exec, so a child would report the bench's own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_candidate(path: Path) -> dict[str, float]:
    """Runs in the child process: score the clip once and report time and peak RSS."""
    baseline = peak_rss_mb()
    started = time.perf_counter()
    report = score_clip(path, expectation(5.0, 720, 24), QcRules())
    elapsed = time.perf_counter() - started
    peak = peak_rss_mb()
    failed = [c.name for c in report.checks if c.status is CheckStatus.FAIL]
    return {
        "seconds": elapsed,
        "peak_rss_mb": peak,
        "rss_before_mb": baseline,
        "failed_checks": len(failed),
    }


def hd_timing(workdir: Path, spec: ClipSpec, repeat: int) -> dict[str, float]:
    path = write_clip(spec, workdir / f"hd-{spec.kind}.mp4")
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(path)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        runs.append(json.loads(out.stdout))
    seconds = [r["seconds"] for r in runs]
    return {
        "runs": repeat,
        "seconds_min": min(seconds),
        "seconds_median": statistics.median(seconds),
        "seconds_max": max(seconds),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "rss_after_imports_mb": runs[0]["rss_before_mb"],
        "failed_checks": runs[0]["failed_checks"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_candidate(args.one)))
        return 0
    with tempfile.TemporaryDirectory(prefix="qc-bench-") as tmp:
        table = precision_recall(Path(tmp))
        timings = {
            name: hd_timing(Path(tmp), spec, args.repeat) for name, spec in HD_SCENES.items()
        }
    if args.json:
        print(json.dumps({"checks": table, "hd_candidate": timings}, indent=2))
        return 0
    print(f"QC precision/recall over {len(labelled_set())} labelled clips (CLIP skipped: no model)")
    print(f"{'check':<16}{'tp':>4}{'fp':>4}{'fn':>4}{'tn':>4}{'precision':>11}{'recall':>8}")
    for name, row in table.items():
        print(
            f"{name:<16}{row['tp']:>4}{row['fp']:>4}{row['fn']:>4}{row['tn']:>4}"
            f"{row['precision']:>11.2f}{row['recall']:>8.2f}"
        )
    for name, timing in timings.items():
        print(f"\nOne 5 s 1280x720 24 fps candidate, {name}; {timing['runs']} fresh processes:")
        print(
            f"  QC time  min {timing['seconds_min']:.2f} s,"
            f" median {timing['seconds_median']:.2f} s, max {timing['seconds_max']:.2f} s"
        )
        print(
            f"  peak RSS {timing['peak_rss_mb']:.0f} MB "
            f"({timing['rss_after_imports_mb']:.0f} MB after imports)"
        )
    print("\nBar (handout, whole pass): 1.2-1.5 s, 108 MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
