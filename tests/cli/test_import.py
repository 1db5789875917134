"""`attrib import` against a real API on loopback (through its bulk route, POST /v1/sources/bulk):
a folder with a duplicate, a broken image and an empty folder gives the right per-item summary and
exit code; a re-run resumes; a lost state file is covered by the per-item Idempotency-Key."""
import json
import shutil

import pytest

from tests.factories import photo_bytes, truncated_jpeg


@pytest.fixture
def catalogue(tmp_path):
    root = tmp_path / "catalogue"
    for name, photos in {"dog": [("dog", 0), ("dog", 1)], "cat": [("cat", 0)], "dog-again": [("dog", 0), ("dog", 1)]}.items():
        (root / name).mkdir(parents=True)
        for subject, index in photos:
            (root / name / f"{subject}{index}.jpg").write_bytes(photo_bytes(subject, index))
    (root / "broken").mkdir()
    (root / "broken" / "half.jpg").write_bytes(truncated_jpeg())
    (root / "empty").mkdir()
    (root / "cat" / "work.json").write_text(json.dumps({"title": "A cat", "external_ref": "cat-001"}))
    return root


def lines_by_item(stdout: str) -> dict[str, str]:
    return {line.split()[1]: line.split()[0] for line in stdout.splitlines() if len(line.split()) > 1
            and line.split()[0] in ("created", "duplicate", "refused")}


def works(client) -> list[dict]:
    return client.get("/sources", params={"limit": 100}).json()["data"]


def test_import_folder_summary_exit_code_and_resume(client, make_key, live_api, run_cli, catalogue):
    registrar = make_key("registrar", rights_holder="studio")
    first = run_cli("import", str(catalogue), key=registrar, url=live_api)
    assert first.returncode == 1, first.stdout + first.stderr
    assert lines_by_item(first.stdout) == {"broken": "refused", "cat": "created", "dog": "created",
                                           "dog-again": "duplicate", "empty": "refused"}
    assert "2 created, 1 duplicate, 2 refused" in first.stdout
    assert "corrupt" in first.stdout or "not_an_image" in first.stdout  # the server's reason is shown
    # Sent through POST /v1/sources/bulk: the import's id is printed to follow its embedding.
    [import_id] = [line.split()[1] for line in first.stdout.splitlines() if line.startswith("import ")]
    assert client.get(f"/v1/sources/bulk/{import_id}").json()["items"]["created"] == 2
    registered = works(client)
    assert sorted(w["title"] for w in registered) == ["A cat", "dog"]
    assert {w["external_ref"] for w in registered} == {"cat-001", None}

    # Fix the broken work and run again: only it is sent; the others are remembered.
    shutil.rmtree(catalogue / "empty")
    (catalogue / "broken" / "half.jpg").write_bytes(photo_bytes("teapot", 0))
    second = run_cli("import", str(catalogue), key=registrar, url=live_api)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "3 created, 1 duplicate, 0 refused" in second.stdout  # the summary covers every item
    assert "already imported" in second.stdout and lines_by_item(second.stdout)["broken"] == "created"
    assert len(works(client)) == 3

    # State lost after the server answered: the Idempotency-Keys replay, no second work is made.
    (catalogue / ".attrib-import.json").unlink()
    third = run_cli("import", str(catalogue), key=registrar, url=live_api)
    assert third.returncode == 0, third.stdout + third.stderr
    assert len(works(client)) == 3


def test_import_csv_refuses_a_row_with_a_missing_file(client, make_key, live_api, run_cli, tmp_path):
    (tmp_path / "a.jpg").write_bytes(photo_bytes("vase", 0))
    sheet = tmp_path / "works.csv"
    sheet.write_text("item_id,title,files,licence\nv1,Vase,a.jpg,CC-BY\nv2,Ghost,nothere.jpg,\n")
    result = run_cli("import", str(sheet), "--json", key=make_key("registrar", rights_holder="studio"),
                     url=live_api)
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["summary"] == {"created": 1, "duplicate": 0, "refused": 1}
    refused = [i for i in summary["items"] if i["status"] == "refused"][0]
    assert refused["item_id"] == "v2" and "nothere.jpg" in refused["detail"]
    assert works(client)[0]["licence"] == "CC-BY"
