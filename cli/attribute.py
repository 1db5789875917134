"""`attrib attribute FILE...|FOLDER`: attribute images and print the top works per image as a table,
or every match as JSON (`--json`) or CSV (`--csv`). Exits 1 if any image was refused or its job failed."""
import argparse
import csv
import json
import sys
import time
from pathlib import Path

import httpx

from cli.catalogue import IMAGE_SUFFIXES
from cli.http import ApiError, add_connection_args, checked, client_from
from cli.output import table


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="attrib attribute", description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="image files and/or folders of images")
    add_connection_args(parser)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for each result")
    parser.add_argument("--callback-url", help="also POST each signed result there")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON document with every result")
    output.add_argument("--csv", action="store_true", help="one CSV row per (image, matched work)")
    return parser.parse_args(argv)


def expand(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    return files


def attribute_one(client: httpx.Client, path: Path, top_k: int, timeout: float, callback_url: str | None) -> dict:
    try:
        response = client.post("/attribute", params={"wait": min(timeout, 30), "top_k": top_k},
                               data={"callback_url": callback_url} if callback_url else None,
                               files={"image": (path.name, path.read_bytes(), "application/octet-stream")})
        job = checked(response).json()
        deadline = time.monotonic() + timeout
        while job["status"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = checked(client.get(f"/attribute/{job['id']}")).json()
        return {"file": str(path), **job}
    except ApiError as exc:
        return {"file": str(path), "status": "refused", "error": f"{exc.reason or exc.status}: {exc.detail}"}
    except OSError as exc:
        return {"file": str(path), "status": "refused", "error": str(exc)}


def rows_for_csv(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        base = {"file": r["file"], "job_id": r.get("id"), "status": r["status"], "error": r.get("error")}
        rows += [{**base, **{k: m[k] for k in ("rank", "work_id", "title", "rights_holder", "score", "share")}}
                 for m in r.get("matches") or []] or [base]
    return rows


def summary_rows(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        top = (r.get("matches") or [None])[0] or {}
        out.append({"file": r["file"], "status": r["status"], "work": top.get("title"), "share": top.get("share"),
                    "score": top.get("score"), "unattributed": r.get("unattributed"),
                    "job": r.get("id") or r.get("error")})
    return out


def main(argv: list[str] | None = None, transport: httpx.BaseTransport | None = None) -> int:
    args = parse_args(argv)
    with client_from(args, transport) as client:
        results = [attribute_one(client, p, args.top_k, args.timeout, args.callback_url) for p in expand(args.paths)]
    if args.json:
        print(json.dumps(results, indent=1))
    elif args.csv:
        fields = ["file", "job_id", "status", "rank", "work_id", "title", "rights_holder", "score", "share", "error"]
        writer = csv.DictWriter(sys.stdout, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows_for_csv(results))
    else:
        print(table(summary_rows(results), ["file", "status", "work", "share", "score", "unattributed", "job"]))
    return 1 if any(r["status"] != "done" for r in results) else 0
