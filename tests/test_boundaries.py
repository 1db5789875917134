"""Import boundaries: the API process never loads torch or faiss; common and core stay apart; only
indexing/backends imports faiss (or pymilvus)."""
import ast
import subprocess
import sys

from tests.conftest import REPO


def modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    return set(out.stdout.split())


def test_api_never_imports_torch_or_faiss():
    loaded = modules_after_import("app.main")
    assert "fastapi" in loaded  # the probe really imported the app
    assert not {"torch", "faiss", "torchvision", "open_clip", "timm"} & loaded


def test_core_imports_no_web_database_or_queue_code():
    loaded = modules_after_import("core.encoder, core.ranking")
    assert "torch" in loaded
    assert not {"fastapi", "sqlalchemy", "rq", "redis"} & loaded


def test_cli_client_commands_never_import_torch():
    loaded = modules_after_import("cli.__main__, cli.importer, cli.attribute, cli.listing, cli.jobs, cli.status, "
                                  "cli.sweep, worker.deliveries, common.webhooks")
    assert "httpx" in loaded and "sqlalchemy" in loaded  # the probe really imported them
    assert not {"torch", "faiss", "torchvision", "open_clip", "timm"} & loaded


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


def test_only_the_backends_import_faiss():
    backends = REPO / "indexing" / "backends"
    sources = [p for p in REPO.rglob("*.py") if ".venv" not in p.parts and backends not in p.parents]
    offenders = [str(p.relative_to(REPO)) for p in sources
                 if any(m.split(".")[0] in {"faiss", "pymilvus"} for m in imported_modules(p))]
    assert len(sources) > 50 and offenders == []
    assert "faiss" in {m.split(".")[0] for m in imported_modules(backends / "faiss.py")}
