"""`attrib import FOLDER|CSV`: register a catalogue, one work per sub-folder or CSV row.

Resumable: a state file (default `FOLDER/.attrib-import.json` or `CSV.attrib-import.json`) remembers
each item that was created or found duplicate, keyed by a fingerprint of its metadata and bytes, so a
re-run sends only what is new, changed or was refused. Each request also carries an Idempotency-Key
derived from that fingerprint, so a run killed after the server answered but before the state was
saved gets the first answer again, not a second work.

Uses `POST /sources/bulk` when the server has it (one probe of its OpenAPI document), else one
`POST /sources` per work. Prints one line per item (created / duplicate / refused with the reason)
and exits 1 if any item was refused."""
import argparse
import json
import sys
from pathlib import Path

import httpx
from tqdm import tqdm

from cli.catalogue import Item, read_catalogue
from cli.http import ApiError, add_connection_args, checked, client_from

BULK_PATHS = ("/sources/bulk", "/v1/sources/bulk")
DONE = ("created", "duplicate")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="attrib import", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a folder of sub-folders (one per work) or a CSV file")
    add_connection_args(parser)
    parser.add_argument("--rights-holder", help="for admin keys (registrar keys use their own)")
    parser.add_argument("--state", type=Path, help="resume file (default beside the source)")
    parser.add_argument("--batch", type=int, default=16, help="works per bulk request")
    parser.add_argument("--no-bulk", action="store_true", help="never use POST /sources/bulk")
    parser.add_argument("--callback-url", help="bulk registration only: each bulk request (--batch works) is one "
                        "import, and this URL gets one signed registration.finished webhook per import once "
                        "every image it created is embedded or failed")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, transport: httpx.BaseTransport | None = None) -> int:
    args = parse_args(argv)
    items = read_catalogue(args.source, args.rights_holder)
    state_path = args.state or default_state_path(args.source)
    state = load_state(state_path)
    with client_from(args, transport) as client:
        importer = Importer(client, state, bulk_path=None if args.no_bulk else find_bulk_path(client),
                            callback_url=args.callback_url)
        results = importer.run(items, args.batch, lambda: save_state(state_path, state))
    print_summary(results, args.json, importer.imports)
    return 1 if any(r["status"] == "refused" for r in results) else 0


def default_state_path(source: Path) -> Path:
    return source / ".attrib-import.json" if source.is_dir() else source.with_name(source.name + ".attrib-import.json")


def load_state(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"items": {}}


def save_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(path)  # a kill mid-write never leaves a truncated state file


def find_bulk_path(client: httpx.Client) -> str | None:
    """One probe: the bulk route if the OpenAPI document lists it (no document: assume it is absent)."""
    try:
        response = client.get("/openapi.json")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    paths = response.json().get("paths", {})
    return next((p for p in BULK_PATHS if "post" in paths.get(p, {})), None)


class Importer:
    def __init__(self, client: httpx.Client, state: dict, *, bulk_path: str | None, callback_url: str | None = None):
        self.client, self.state, self.callback_url = client, state, callback_url
        self.bulk_path, self.bulk = bulk_path, bulk_path is not None
        self.imports: list[str] = []  # the server's import ids (one per bulk request), to follow progress

    def run(self, items: list[Item], batch_size: int, save) -> list[dict]:
        results, todo = [], []
        for item in items:
            fingerprint = item.fingerprint() if item.problem is None else None
            known = self.state["items"].get(item.item_id)
            if item.problem:
                results.append(_result(item, "refused", reason="local_check", detail=item.problem))
            elif known and known.get("fingerprint") == fingerprint and known.get("status") in DONE:
                results.append({**known, "item_id": item.item_id, "skipped": True})
            else:
                todo.append((item, fingerprint))
        with tqdm(total=len(todo), unit="work", desc="import", disable=None, file=sys.stderr) as bar:
            for start in range(0, len(todo), max(1, batch_size) if self.bulk else 1):
                chunk = todo[start:start + (batch_size if self.bulk else 1)]
                for (item, fingerprint), result in zip(chunk, self._send(chunk)):
                    results.append(result)
                    if result["status"] in DONE:
                        self.state["items"][item.item_id] = {**result, "fingerprint": fingerprint}
                save()
                bar.update(len(chunk))
        order = {item.item_id: n for n, item in enumerate(items)}
        return sorted(results, key=lambda r: order[r["item_id"]])

    def _send(self, chunk: list[tuple[Item, str]]) -> list[dict]:
        try:
            return self._send_bulk(chunk) if self.bulk else [self._send_one(*chunk[0])]
        except httpx.HTTPError as exc:
            return [_result(item, "refused", reason="connection", detail=str(exc)) for item, _ in chunk]

    def _send_one(self, item: Item, fingerprint: str) -> dict:
        files = [("images", (p.name, p.read_bytes(), "application/octet-stream")) for p in item.files]
        response = self.client.post("/sources", files=files, data={"title": item.title, **item.metadata},
                                    headers={"Idempotency-Key": f"attrib-import-{fingerprint[:48]}"})
        if response.status_code in (200, 201):
            status = "created" if response.status_code == 201 else "duplicate"
            return _result(item, status, work_id=response.json()["id"])
        error = ApiError(response)
        return _result(item, "refused", reason=error.reason or _reason_of(error.status), detail=error.detail)

    def _send_bulk(self, chunk: list[tuple[Item, str]]) -> list[dict]:
        manifest, files = {"items": []}, []
        for n, (item, _) in enumerate(chunk):
            names = [f"{n}-{p.name}" for p in item.files]  # unique across the items of one request
            manifest["items"].append({"item_id": item.item_id, "title": item.title, **item.metadata, "files": names})
            files += [("files", (name, p.read_bytes(), "application/octet-stream")) for name, p in zip(names, item.files)]
        if self.callback_url:
            manifest["callback_url"] = self.callback_url
        key = "attrib-import-" + "-".join(f[:8] for _, f in chunk)[:180]
        response = self.client.post(self.bulk_path, data={"manifest": json.dumps(manifest)}, files=files,
                                    headers={"Idempotency-Key": key})
        if response.status_code >= 400:
            error = ApiError(response)
            return [_result(item, "refused", reason=error.reason or _reason_of(error.status), detail=error.detail)
                    for item, _ in chunk]
        body = checked(response).json()
        if body.get("import_id"):
            self.imports.append(body["import_id"])
        by_id = {r["item_id"]: r for r in body["items"]}
        return [_result(item, **{k: v for k, v in by_id.get(item.item_id, {"status": "refused",
                                                                           "reason": "missing_from_response"}).items()
                                 if k != "item_id"}) for item, _ in chunk]


def _reason_of(status: int) -> str:
    return {409: "duplicate_images", 413: "too_large", 403: "forbidden", 401: "unauthorised",
            429: "rate_limited", 503: "unavailable"}.get(status, f"http_{status}")


def _result(item: Item, status: str, **extra) -> dict:
    return {"item_id": item.item_id, "title": item.title, "status": status, **extra}


def print_summary(results: list[dict], as_json: bool, imports: list[str] = ()) -> None:
    counts = {s: sum(r["status"] == s for r in results) for s in ("created", "duplicate", "refused")}
    if as_json:
        print(json.dumps({"items": results, "summary": counts, "imports": list(imports)}, indent=1))
        return
    for r in results:
        note = r.get("work_id") or f"{r.get('reason')}: {r.get('detail')}"
        print(f"{r['status']:<9} {r['item_id']}  {note}{'  (already imported)' if r.get('skipped') else ''}")
    for import_id in imports:  # embedding goes on after the command ends
        print(f"import    {import_id}  progress: GET /v1/sources/bulk/{import_id}")
    print(f"{counts['created']} created, {counts['duplicate']} duplicate, {counts['refused']} refused")
