"""`attrib jobs [JOB_ID...]`: show attribution jobs by id; without ids, list this key's recent jobs
(needs a server with `GET /attribute`)."""
import argparse
import json

import httpx

from cli.http import ApiError, add_connection_args, checked, client_from
from cli.output import table


def main(argv: list[str] | None = None, transport: httpx.BaseTransport | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attrib jobs", description=__doc__)
    parser.add_argument("job_ids", nargs="*")
    add_connection_args(parser)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with client_from(args, transport) as client:
        try:
            jobs = [checked(client.get(f"/attribute/{j}")).json() for j in args.job_ids] or _list(client)
        except ApiError as exc:
            print(f"error: {exc}")
            return 1
    if args.json:
        print(json.dumps(jobs, indent=1))
        return 0
    rows = [{**j, "top work": ((j.get("matches") or [None])[0] or {}).get("title"),
             "webhook": ",".join(d["status"] for d in j.get("deliveries") or []) or None} for j in jobs]
    print(table(rows, ["id", "status", "created_at", "finished_at", "top work", "webhook", "error"]))
    return 0


def _list(client: httpx.Client) -> list[dict]:
    response = client.get("/attribute")
    if response.status_code in (404, 405):
        raise SystemExit("this server cannot list jobs yet (no GET /attribute); pass job ids")
    page = checked(response).json()
    return page["data"] if isinstance(page, dict) else page
