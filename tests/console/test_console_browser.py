"""The console end to end in headless Chromium (Debian's `chromium`, driven by Playwright; no browser
download): a real uvicorn on loopback and a real worker. Sign in, register a work, attribute an image and
see the query beside the matched thumbnails, give a verdict, search and delete a work, read the service
state. A screenshot of the result is saved under the test's tmp path (and in ATTRIB_CONSOLE_SCREENSHOT_DIR
when set, which is how docs/console.png is made)."""
import base64
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from sqlalchemy import select

from common.db.models import ModelPair, Verdict
from common.db.session import new_session
from tests.conftest import REPO, auth
from tests.factories import photo_path, tiny_png

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def api_server(service_env, tmp_path):
    port = free_port()
    log = open(tmp_path / "api.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
                                "--port", str(port)], cwd=REPO, stdout=log, stderr=log,
                               env={**os.environ, **service_env, "PYTHONPATH": str(REPO)})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + "/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "api.log").read_text()
        time.sleep(0.2)
    yield base
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def wait_searchable(base: str, key: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        works = httpx.get(base + "/sources", headers=auth(key)).json()["data"]
        if works and all(w["searchable"] for w in works):
            return
        time.sleep(0.3)
    raise AssertionError("works never became searchable")


def thumbnail_loaded(page, selector: str) -> None:
    page.wait_for_function(
        "s => { const i = document.querySelector(s); return i && i.src.startsWith('blob:') && i.naturalWidth > 0; }",
        arg=selector, timeout=15_000)


def test_console_sign_in_attribute_verdict_register_delete(api_server, browser, make_key, start_worker, tmp_path):
    start_worker()
    admin = make_key("admin", name="console-admin")
    for subject in ("cat", "teapot"):  # other works, registered through the API
        files = [("images", (f"{subject}.jpg", photo_path(subject, 0).read_bytes(), "image/jpeg"))]
        httpx.post(api_server + "/sources", headers=auth(admin), files=files,
                   data={"title": subject, "rights_holder": "Studio"}).raise_for_status()
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.on("pageerror", lambda exc: pytest.fail(f"script error: {exc}"))

    page.goto(api_server + "/console/attribute")
    page.wait_for_url("**/console/signin**")  # no key yet: sent to sign in
    page.get_by_label("API key").fill("atk_wrong")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").filter(has_text="not accepted").wait_for()
    page.get_by_label("API key").fill(admin)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/attribute")

    page.get_by_role("link", name="Register a work").click()
    page.get_by_label("Title").fill("Dog portraits")
    page.get_by_label("Rights holder").fill("Studio")
    page.get_by_label("External reference").fill("cat-0042")
    page.get_by_label("Licence").fill("CC-BY-4.0")
    page.get_by_label("Images of the work").set_input_files([str(photo_path("dog", i)) for i in (0, 1)])
    page.get_by_role("button", name="Register").click()
    page.get_by_role("status").filter(has_text="Registered “Dog portraits” with 2 images").wait_for()
    wait_searchable(api_server, admin)

    page.get_by_role("link", name="Attribute").click()
    page.get_by_label("Choose or drop an image to attribute").set_input_files(str(photo_path("dog", 2)))
    page.get_by_role("button", name="Attribute", exact=True).click()
    page.get_by_role("status").filter(has_text="Done").wait_for(timeout=30_000)
    first = page.locator(".match").first
    assert "Dog portraits" in first.locator(".title").inner_text()
    assert "cat-0042" in first.locator(".evidence").inner_text()
    assert page.locator(".match").count() == 3
    thumbnail_loaded(page, "#query-thumb")
    thumbnail_loaded(page, ".match .thumb")
    assert "%" in page.locator("#unattributed").inner_text()
    job_id = page.url.rsplit("/", 1)[-1]

    first.get_by_role("button", name="This is the work").click()
    confirm = first.get_by_role("button", name="This is the work")
    page.wait_for_function("b => b.getAttribute('aria-pressed') === 'true'", arg=confirm.element_handle())
    assert "You confirmed this work" in first.locator(".verdict-state").inner_text()
    shot = tmp_path / "console-result.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("ATTRIB_CONSOLE_SCREENSHOT_DIR"):
        page.screenshot(path=os.path.join(os.environ["ATTRIB_CONSOLE_SCREENSHOT_DIR"], "console.png"))
    assert shot.stat().st_size > 10_000
    with new_session() as session:
        verdict = session.scalar(select(Verdict))
    assert verdict.job_id == uuid.UUID(job_id) and verdict.verdict.value == "confirm"

    page.get_by_role("link", name="Works", exact=True).click()
    page.get_by_label("Search works by title or external reference").fill("dog")
    page.get_by_role("button", name="Search").click()
    page.get_by_text("1 works shown").wait_for()
    work = page.locator(".work").first
    assert "2 images embedded" in work.locator(".state").inner_text()
    thumbnail_loaded(page, ".work .images img")
    work.get_by_role("button", name="Delete Dog portraits").click()
    page.get_by_role("button", name="Keep it").click()  # the first answer is the safe one
    assert page.locator(".work").count() == 1
    work.get_by_role("button", name="Delete Dog portraits").click()
    page.get_by_role("button", name="Delete the work").click()
    page.get_by_role("status").filter(has_text="Deleted “Dog portraits”").wait_for()
    work_id = verdict.work_id
    assert httpx.get(f"{api_server}/sources/{work_id}", headers=auth(admin)).status_code == 404

    page.get_by_role("link", name="Service state").click()
    page.locator("#workers td").first.wait_for()
    assert "efficientnet" in page.locator("#workers").inner_text()
    assert "attribute, embed" in page.locator("#workers").inner_text()  # the queues this worker serves
    assert "queued" in page.locator("#queue").inner_text()


def test_reviewer_sees_only_review_pages_and_plain_errors(api_server, browser, make_key):
    reviewer = make_key("reviewer", name="reviewer")
    page = browser.new_page()
    page.goto(api_server + "/console/signin")
    page.get_by_label("API key").fill(reviewer)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/jobs")
    # The nav is filtered by the key's scopes in the page's script: wait for it rather than race it.
    page.get_by_role("link", name="Review a job").wait_for(state="visible")
    page.locator('nav a[href="/console/works/new"]').wait_for(state="hidden")
    page.get_by_label("Job id").fill(str(uuid.uuid4()))
    page.get_by_role("button", name="Open").click()
    page.get_by_role("alert").filter(has_text="Not found").wait_for()
    page.goto(api_server + "/console/reports/1")  # run reports are for admins
    page.get_by_role("alert").filter(has_text="not allowed").wait_for()


def publish_pair_with_report(html: str) -> int:
    """A serving pair whose run stored its report, as `training publish --html-report` leaves it."""
    from datetime import datetime, timezone

    from common.settings import get_settings
    from common.storage import get_storage
    get_storage(get_settings()).put("reports/idx-1/report.html", html.encode())
    with new_session() as session:
        pair = ModelPair(encoder_id="attrib-test@1", encoder_uri="builtin:efficientnet-lite0", index_id="idx-1",
                         report={"map": 0.5, "html_report": "reports/idx-1/report.html"}, active=True,
                         activated_at=datetime.now(timezone.utc))
        session.add(pair)
        session.commit()
        return pair.id


def test_admin_opens_the_serving_pairs_run_report(api_server, browser, make_key):
    png = base64.b64encode(tiny_png((40, 30))).decode()
    pair_id = publish_pair_with_report(
        "<!doctype html><html><head><style>h1 { color: rgb(10, 120, 30); }</style></head><body>"
        f"<h1>Recall@K of the run</h1><img alt='loss curve' src='data:image/png;base64,{png}'></body></html>")
    page = browser.new_page()
    page.on("pageerror", lambda exc: pytest.fail(f"script error: {exc}"))
    page.goto(api_server + "/console/signin")
    page.get_by_label("API key").fill(make_key("admin"))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/attribute")
    page.get_by_role("link", name="Service state").click()
    page.get_by_role("link", name="Open the run report").click()
    page.wait_for_url(f"**/console/reports/{pair_id}")
    report = page.frame_locator("#report-frame")
    heading = report.get_by_role("heading", name="Recall@K of the run")
    heading.wait_for()
    assert heading.evaluate("h => getComputedStyle(h).color") == "rgb(10, 120, 30)"  # inline style allowed
    report.get_by_alt_text("loss curve").wait_for()
    assert report.get_by_alt_text("loss curve").evaluate("i => i.naturalWidth") == 40  # data: image shown
    assert page.get_by_role("link", name="Download the report").is_visible()
