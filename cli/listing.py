"""`attrib works`: list registered works (a registrar sees its own rights holder's)."""
import argparse
import json

import httpx

from cli.http import add_connection_args, checked, client_from
from cli.output import table


def main(argv: list[str] | None = None, transport: httpx.BaseTransport | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attrib works", description=__doc__)
    add_connection_args(parser)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--rights-holder", help="admin keys: only this rights holder's works")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    params = {"limit": args.limit, "offset": args.offset, **({"rights_holder": args.rights_holder}
                                                             if args.rights_holder else {})}
    with client_from(args, transport) as client:
        page = checked(client.get("/sources", params=params)).json()
    if args.json:
        print(json.dumps(page, indent=1))
        return 0
    rows = [{**w, "images": len(w["images"])} for w in page["data"]]
    print(table(rows, ["id", "title", "rights_holder", "external_ref", "images", "searchable", "created_at"]))
    if "count" in page:
        print(f"{len(rows)} of {page['count']} works")
    return 0
