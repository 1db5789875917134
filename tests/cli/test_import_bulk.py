"""The client side of the bulk registration contract (POST /sources/bulk, built on another branch):
a small FastAPI app on loopback implements the contract as specified, so `attrib import` is checked
to probe the OpenAPI document, batch items into one multipart request with a JSON manifest and
uniquely named `files` parts, and report the per-item statuses it gets back. Replace the stub with the
real route once it lands."""
import hashlib
import json
from typing import Annotated

import pytest
from fastapi import FastAPI, File, Form, UploadFile

from tests.cli.conftest import serve
from tests.factories import photo_bytes


def contract_app(received: list) -> FastAPI:
    app = FastAPI()
    seen: dict[str, str] = {}

    @app.post("/sources/bulk")
    async def bulk(manifest: Annotated[str, Form()], files: Annotated[list[UploadFile], File()]):
        parts = {f.filename: await f.read() for f in files}
        doc = json.loads(manifest)
        received.append({"manifest": doc, "parts": sorted(parts)})
        out = []
        for item in doc["items"]:
            if not item["files"] or any(name not in parts for name in item["files"]):
                out.append({"item_id": item["item_id"], "status": "refused", "reason": "missing_file"})
                continue
            digest = hashlib.sha256(b"".join(parts[n] for n in item["files"])).hexdigest()
            status = "duplicate" if digest in seen else "created"
            seen.setdefault(digest, f"w-{len(seen)}")
            out.append({"item_id": item["item_id"], "status": status, "work_id": seen[digest]})
        return {"items": out, "summary": {s: sum(i["status"] == s for i in out) for s in ("created", "duplicate", "refused")}}
    return app


@pytest.fixture
def bulk_server():
    received: list = []
    yield from ((url, received) for url in serve(contract_app(received)))


def test_import_uses_the_bulk_route_when_listed(bulk_server, run_cli, tmp_path):
    url, received = bulk_server
    for name, subject in {"a": "dog", "b": "cat", "c": "dog"}.items():
        (tmp_path / "cat" / name).mkdir(parents=True)
        (tmp_path / "cat" / name / "01.jpg").write_bytes(photo_bytes(subject, 0))
    (tmp_path / "cat" / "d").mkdir()  # no images: refused locally, never sent
    result = run_cli("import", str(tmp_path / "cat"), "--batch", "2", "--callback-url", "https://h.example/x",
                     key="atk_any", url=url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 created, 1 duplicate, 1 refused" in result.stdout
    assert [len(r["manifest"]["items"]) for r in received] == [2, 1]  # batches of --batch items
    first = received[0]
    assert first["parts"] == ["0-01.jpg", "1-01.jpg"]  # same file name in two works, unique parts
    assert first["manifest"]["items"][0] == {"item_id": "a", "title": "a", "files": ["0-01.jpg"]}
    assert first["manifest"]["callback_url"] == "https://h.example/x"
