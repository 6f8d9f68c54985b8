"""`reelforge`: submit and follow video jobs from a terminal; start and stop the local stack.

reelforge submit "a fox in the snow" --duration 5 --watch
reelforge status JOB_ID | watch JOB_ID | list [--state completed] | cancel JOB_ID
reelforge models [--local]     the catalog and each model's state today
reelforge up | down
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from services.cli.settings import CliSettings
from shared.providers.catalog import CatalogError, load_catalog, model_view


def _client(s: CliSettings) -> httpx.Client:
    return httpx.Client(
        base_url=s.url, headers={"Authorization": f"Bearer {s.api_key}"}, timeout=30
    )


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        detail = (
            response.json().get("detail")
            if "json" in response.headers.get("content-type", "")
            else response.text
        )
        text = detail if isinstance(detail, str) else json.dumps(detail)
        raise SystemExit(f"error: HTTP {response.status_code}: {text}")
    return response.json()


def _bar(progress: float, width: int = 32) -> str:
    done = int(max(0.0, min(progress, 1.0)) * width)
    return "[" + "#" * done + "-" * (width - done) + f"] {progress * 100:3.0f}%"


def cmd_submit(s: CliSettings, a: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "prompt": a.prompt,
        "duration_s": a.duration,
        "resolution": a.resolution,
        "aspect_ratio": a.aspect,
        "policy": a.policy,
        "candidates": a.candidates,
    }
    if a.provider:
        body.update(policy="explicit", provider=a.provider)
    if a.budget:
        body["budget_usd"] = a.budget
    headers = {"Idempotency-Key": a.idempotency_key} if a.idempotency_key else {}
    with _client(s) as c:
        job = _check(c.post("/v1/jobs", json=body, headers=headers))
    print(
        f"{job['job_id']}  {job['state']}  quote {job['quote_usd']:.2f} USD  "
        f"route {', '.join(r['provider'] + '/' + r['model'] for r in job['route'][:3])}"
    )
    return cmd_watch(s, argparse.Namespace(job_id=job["job_id"])) if a.watch else 0


def cmd_status(s: CliSettings, a: argparse.Namespace) -> int:
    with _client(s) as c:
        print(json.dumps(_check(c.get(f"/v1/jobs/{a.job_id}")), indent=2))
    return 0


def cmd_watch(s: CliSettings, a: argparse.Namespace) -> int:
    with _client(s) as c, c.stream("GET", f"/v1/jobs/{a.job_id}/events", timeout=None) as r:
        if r.status_code >= 400:
            r.read()
            _check(r)
        for line in r.iter_lines():
            if not line.startswith("data:"):
                continue
            data = json.loads(line[5:])
            if "result" in data:  # the final frame: the whole job
                print()
                if data["state"] == "completed":
                    v = data["result"]
                    print(
                        f"completed: s3://{v['bucket']}/{v['object_key']} "
                        f"({v['width']}x{v['height']}, "
                        f"{v['duration_s']} s, {v['size_bytes']} bytes)"
                    )
                    print(f"download: {s.url}/v1/jobs/{a.job_id}/video")
                    return 0
                print(f"{data['state']}: {(data.get('failure') or {}).get('message', '')}")
                return 1
            queue = f" queue #{data['queue_position']}" if data.get("queue_position") else ""
            print(f"\r{data['state']:<10} {_bar(data['progress'])}{queue}   ", end="", flush=True)
    return 1


def cmd_list(s: CliSettings, a: argparse.Namespace) -> int:
    params = {"limit": a.limit, **({"state": a.state} if a.state else {})}
    with _client(s) as c:
        page = _check(c.get("/v1/jobs", params=params))
    for job in page["jobs"]:
        print(
            f"{job['job_id']}  {job['state']:<10} {job['progress'] * 100:3.0f}%  "
            f"{job['created_at'][:19]}  {job['request']['prompt'][:50]}"
        )
    return 0


def cmd_cancel(s: CliSettings, a: argparse.Namespace) -> int:
    with _client(s) as c:
        job = _check(c.post(f"/v1/jobs/{a.job_id}/cancel"))
    print(f"{job['job_id']}  {job['state']}")
    return 0


def cmd_models(s: CliSettings, a: argparse.Namespace) -> int:
    if a.local:
        today = datetime.now(UTC).date()
        catalog = load_catalog(s.catalog_override_file)
        views = [model_view(m, today) for m in catalog.models]
    else:
        with _client(s) as c:
            views = _check(c.get("/v1/models"))
    print(models_text(views))
    return 0


def models_text(views: list[dict[str, Any]]) -> str:
    """One line per model: name, state, price and the dates behind a non-GA state."""
    lines = [f"{'MODEL':<42} {'STATE':<10} {'USD/S':>6}  NOTES"]
    for v in views:
        name = f"{v['provider']}/{v['model']}"
        lines.append(
            f"{name:<42} {v['state']:<10} {v['price_per_second_usd']:>6.3f}  "
            f"{v.get('state_notice') or ''}".rstrip()
        )
    return "\n".join(lines)


def cmd_up(s: CliSettings, a: argparse.Namespace) -> int:
    from deploy.stack import Stack, default_specs, describe

    stack = Stack(default_specs(render_seconds=a.render_seconds), Path(s.run_dir))
    stack.start_all(timeout_s=90)
    print(f"running (logs and pids in {s.run_dir}/):\n{describe(list(stack.specs.values()))}")
    return 0


def cmd_down(s: CliSettings, a: argparse.Namespace) -> int:
    from deploy.stack import stop_from_pid_files

    stopped = stop_from_pid_files(Path(s.run_dir))
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reelforge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("submit", help="create a job")
    sp.add_argument("prompt")
    sp.add_argument("--duration", type=int, default=5)
    sp.add_argument("--resolution", default="720p")
    sp.add_argument("--aspect", default="16:9")
    sp.add_argument("--policy", default="cheapest")
    sp.add_argument("--provider")
    sp.add_argument("--candidates", type=int, default=1)
    sp.add_argument("--budget", type=float)
    sp.add_argument("--idempotency-key")
    sp.add_argument("--watch", action="store_true", help="follow progress until the job ends")
    sp.set_defaults(run=cmd_submit)
    for name, fn, text in (
        ("status", cmd_status, "show a job"),
        ("watch", cmd_watch, "follow a job"),
        ("cancel", cmd_cancel, "cancel a job"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("job_id")
        sp.set_defaults(run=fn)
    sp = sub.add_parser("list", help="list your jobs")
    sp.add_argument("--state")
    sp.add_argument("--limit", type=int, default=20)
    sp.set_defaults(run=cmd_list)
    sp = sub.add_parser("models", help="list the model catalog and each model's state today")
    sp.add_argument(
        "--local", action="store_true", help="read the catalog files here instead of the API"
    )
    sp.set_defaults(run=cmd_models)
    sp = sub.add_parser("up", help="start the emulator and every service locally")
    sp.add_argument("--render-seconds", type=float, default=5.0)
    sp.set_defaults(run=cmd_up)
    sub.add_parser("down", help="stop what `up` started").set_defaults(run=cmd_down)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(CliSettings(), args))
    except httpx.ConnectError:
        print(
            f"error: the intake API at {CliSettings().url} does not answer (reelforge up?)",
            file=sys.stderr,
        )
        return 2
    except CatalogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
