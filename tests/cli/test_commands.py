"""The other `attrib` commands: attribute (table, --json, --csv; a refused file makes the exit code 1),
works, jobs, and the admin commands that run against the database directly."""
import csv
import io
import json

from common.db.models import ApiKey, AuditEntry
from common.db.session import new_session
from tests.factories import photo_bytes, tiny_png


def test_attribute_reports_each_file(client, make_key, live_api, run_cli, tmp_path):
    (tmp_path / "q.jpg").write_bytes(photo_bytes("dog", 1))
    (tmp_path / "tiny.png").write_bytes(tiny_png())
    attributor = make_key("attributor")
    # No worker runs: the job stays queued, which the CLI reports after its timeout.
    table = run_cli("attribute", str(tmp_path), "--timeout", "0.5", key=attributor, url=live_api)
    assert table.returncode == 1
    rows = {line.split()[0].rsplit("/", 1)[-1]: line.split()[1] for line in table.stdout.splitlines()[2:]}
    assert rows == {"q.jpg": "queued", "tiny.png": "refused"}

    as_json = json.loads(run_cli("attribute", str(tmp_path / "tiny.png"), "--json", key=attributor,
                                 url=live_api).stdout)
    assert as_json[0]["status"] == "refused" and as_json[0]["error"].startswith("too_small:")
    as_csv = run_cli("attribute", str(tmp_path / "tiny.png"), "--csv", key=attributor, url=live_api).stdout
    assert list(csv.DictReader(io.StringIO(as_csv)))[0]["status"] == "refused"

    job_id = json.loads(run_cli("attribute", str(tmp_path / "q.jpg"), "--json", "--timeout", "0",
                                key=attributor, url=live_api).stdout)[0]["id"]
    jobs = run_cli("jobs", job_id, key=attributor, url=live_api)
    assert jobs.returncode == 0 and job_id in jobs.stdout and "queued" in jobs.stdout
    other = run_cli("jobs", job_id, key=make_key("attributor", name="other"), url=live_api)
    assert other.returncode == 1 and "404" in other.stdout  # another key's job stays hidden


def test_works_lists_own_works(client, make_key, live_api, run_cli):
    client.post("/sources", files=[("images", ("a.jpg", photo_bytes("cat", 0), "image/jpeg"))],
                data={"title": "Cat", "rights_holder": "studio"})
    client.post("/sources", files=[("images", ("a.jpg", photo_bytes("dog", 0), "image/jpeg"))],
                data={"title": "Dog", "rights_holder": "other"})
    result = run_cli("works", key=make_key("registrar", rights_holder="studio"), url=live_api)
    assert result.returncode == 0 and "Cat" in result.stdout and "Dog" not in result.stdout
    assert "1 of 1 works" in result.stdout
    assert run_cli("works", url=live_api).returncode != 0  # no key: a clear refusal, not a traceback


def test_admin_commands_run_against_the_database(service_env, run_cli):
    created = run_cli("keys", "create", "--name", "first-admin", "--scope", "admin", "--quiet")
    assert created.returncode == 0 and created.stdout.startswith("atk_")
    listed = run_cli("keys", "list")
    assert "first-admin" in listed.stdout
    status = run_cli("status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["works"] == 0 and report["serving_pair"]["id"] is None and report["workers"] == []
    assert run_cli("sweep", "--days", "1").stdout.startswith("deleted 0 finished jobs")
    with new_session() as session:
        assert session.query(ApiKey).count() == 1
        assert [e.action for e in session.query(AuditEntry)] == ["key.create"]
    assert run_cli("nonsense").returncode == 2


def test_console_script_points_at_the_cli():
    import importlib
    import tomllib
    from tests.conftest import REPO
    target = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["attrib"]
    module, _, function = target.partition(":")
    assert callable(getattr(importlib.import_module(module), function))
