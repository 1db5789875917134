"""Cost of one page of GET /sources at several depths: offset pagination (the first API, with its
whole-table count per page) against keyset cursors (now the default, count only on request).

    python -m bench.listing --url sqlite:////tmp/listing.db --works 100000 --out bench/results/listing
    python -m bench.listing --url postgresql+psycopg://postgres@127.0.0.1:5432/bench --works 100000 ...

DESTROYS the database at --url (it is reset to the current schema). Timings are medians of interleaved
repetitions, measured in-process through the same query code the API uses (no HTTP)."""
import argparse
import json
import platform
import statistics
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from common.db import listing
from common.db.models import Work
from common.db.schema import reset_schema
from common.db.session import make_engine

PAGE = 20


def fill(url: str, n: int) -> None:
    reset_schema(url)
    engine = make_engine(url)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = [{"id": uuid.uuid4(), "title": f"work {i}", "rights_holder": "ACME", "external_ref": f"ref-{i}",
             "licence": None, "created_at": start + timedelta(seconds=i)} for i in range(n)]
    with engine.begin() as conn:
        for chunk in range(0, n, 10_000):
            conn.execute(insert(Work), rows[chunk:chunk + 10_000])
    with engine.begin() as conn:  # statistics, as autovacuum would gather them on a live table
        conn.execute(text("ANALYZE works" if engine.dialect.name == "postgresql" else "ANALYZE"))
    engine.dispose()


def timed(read) -> float:
    start = time.perf_counter()
    read()
    return (time.perf_counter() - start) * 1000


def measure(url: str, n: int, repeats: int) -> list[dict]:
    engine = make_engine(url)
    with Session(engine) as session:
        results = [measure_depth(session, scope, holder, depth, repeats)
                   for scope, holder in (("registrar", "ACME"), ("admin", None))
                   for depth in (0, n // 2, n - PAGE)]
    engine.dispose()
    return results


def measure_depth(session: Session, scope: str, holder: str | None, depth: int, repeats: int) -> dict:
    """Medians of interleaved repetitions, so drift on a shared machine hits every variant alike."""
    query = listing.works_query(rights_holder=holder)
    before = session.scalars(select(Work).order_by(Work.created_at, Work.id).offset(depth - 1).limit(1)).first() \
        if depth else None
    cursor = listing.Cursor(before.created_at, before.id).encode() if before else None
    samples = {"offset_page_ms": [], "offset_page_with_count_ms": [], "cursor_page_ms": [], "count_ms": []}
    for _ in range(repeats):
        samples["offset_page_ms"].append(timed(lambda: listing.list_works_offset(
            session, query=query, offset=depth, limit=PAGE)))
        samples["count_ms"].append(timed(lambda: listing.count_rows(session, query=query)))
        samples["offset_page_with_count_ms"].append(samples["offset_page_ms"][-1] + samples["count_ms"][-1])
        samples["cursor_page_ms"].append(timed(lambda: listing.list_works_page(
            session, query=query, cursor=cursor, limit=PAGE)))
        session.expunge_all()
    return {"scope": scope, "depth": depth, **{k: round(statistics.median(v), 2) for k, v in samples.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--works", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/results/listing"))
    args = parser.parse_args(argv)
    fill(args.url, args.works)
    rows = measure(args.url, args.works, args.repeats)
    backend = args.url.split(":", 1)[0].split("+", 1)[0]
    report = {"backend": backend, "works": args.works, "page": PAGE, "repeats": args.repeats,
              "machine": f"{platform.node()} ({platform.processor() or platform.machine()}), shared by other jobs",
              "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{backend}.json").write_text(json.dumps(report, indent=2))
    lines = [f"{backend}, {args.works} works, page {PAGE}, median of {args.repeats} (ms)", "",
             "| listing | depth | offset page | offset page + count (old API) | cursor page | count alone |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['scope']} | {r['depth']} | {r['offset_page_ms']} | {r['offset_page_with_count_ms']} | {r['cursor_page_ms']} "
              f"| {r['count_ms']} |" for r in rows]
    (args.out / f"{backend}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
