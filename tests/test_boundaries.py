"""Import boundaries: the API process never loads torch or faiss; common and core stay apart."""
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
    loaded = modules_after_import("core.encoder, core.index, core.ranking")
    assert "torch" in loaded
    assert not {"fastapi", "sqlalchemy", "rq", "redis"} & loaded


def test_cli_client_commands_never_import_torch():
    loaded = modules_after_import("cli.__main__, cli.importer, cli.attribute, cli.listing, cli.jobs, cli.status, "
                                  "cli.sweep, worker.deliveries, common.webhooks")
    assert "httpx" in loaded and "sqlalchemy" in loaded  # the probe really imported them
    assert not {"torch", "faiss", "torchvision", "open_clip", "timm"} & loaded
