"""Dependencies point inward: pure modules import no I/O library, services import no service."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_LIBRARIES = {
    "aiokafka",
    "faststream",
    "pymongo",
    "motor",
    "minio",
    "httpx",
    "requests",
    "urllib3",
    "fastapi",
    "starlette",
    "uvicorn",
    "socket",
    "asyncio",
    "subprocess",
    "av",
    "cv2",
    "prometheus_client",
    "boto3",
    "aiohttp",
}
PURE_MODULES = [
    ROOT / "shared" / "jobs.py",
    ROOT / "shared" / "routing.py",
    ROOT / "shared" / "providers" / "catalog.py",
    ROOT / "shared" / "providers" / "catalog_file.py",
    ROOT / "shared" / "providers" / "errors.py",
    *sorted((ROOT / "services").glob("*/logic.py")),
]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def local_module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def transitive_imports(path: Path) -> set[str]:
    seen_files: set[Path] = set()
    found: set[str] = set()
    pending = [path]
    while pending:
        current = pending.pop()
        if current in seen_files:
            continue
        seen_files.add(current)
        for module in imported_modules(current):
            found.add(module)
            local = (
                local_module_path(module)
                if module.split(".")[0] in {"shared", "services"}
                else None
            )
            if local is not None:
                pending.append(local)
    return found


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_no_io_library_even_transitively(path: Path) -> None:
    offenders = {m for m in transitive_imports(path) if m.split(".")[0] in IO_LIBRARIES}
    assert not offenders, f"{path.relative_to(ROOT)} reaches I/O modules: {sorted(offenders)}"


def test_services_never_import_another_service() -> None:
    problems = []
    for service in (ROOT / "services").iterdir():
        if not service.is_dir() or service.name.startswith("__"):
            continue
        for path in service.rglob("*.py"):
            for module in imported_modules(path):
                parts = module.split(".")
                if parts[0] == "services" and len(parts) > 1 and parts[1] != service.name:
                    problems.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not problems, problems


# Hosts a code file may name: loopback defaults and the API endpoints a setting points at. Where
# a fact comes from (a provider's docs, a changelog, an SDK) is cited in the data file
# shared/providers/catalog.yaml, never in code.
ENDPOINT_HOSTS = {
    "127.0.0.1",
    "localhost",
    "api.openai.com",
    "api.dev.runwayml.com",
    "api.klingai.com",
    "api-singapore.klingai.com",
    "queue.fal.run",
    "fal.run",
    "api.replicate.com",
    "rest.alpha.fal.ai",  # fal's webhook JWKS endpoint
}
# Hosts that the providers put in their own response bodies (error help links, a
# prediction's web page), which the emulator reproduces as the real APIs send them.
WIRE_BODY_HOSTS = {"docs.fal.ai", "replicate.com", "ai.google.dev"}


def test_code_files_cite_nothing_outside_the_repository() -> None:
    found: list[str] = []
    for path in sorted([*ROOT.glob("shared/**/*.py"), *ROOT.glob("services/**/*.py")]):
        for host in re.findall(r"https?://([A-Za-z0-9.-]+)", path.read_text()):
            if host not in ENDPOINT_HOSTS | WIRE_BODY_HOSTS and not host.endswith(
                ".googleapis.com"
            ):
                found.append(f"{path.relative_to(ROOT)}: {host}")
    assert found == []
