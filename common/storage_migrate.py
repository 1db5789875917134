"""`python -m common.storage_migrate --to s3://bucket/prefix`: copy every stored object from the configured
storage (default: the local folder under ATTRIB_DATA_DIR) to another one, keys unchanged, so the database
needs no rewrite: afterwards set ATTRIB_STORAGE_URL to the target and restart API, workers and trainer.

Idempotent: a key already present at the target is skipped (`--verify` also compares the bytes and
re-copies a differing one), so an interrupted run is simply run again. Copy while the service is stopped, or
run it twice: once live, then once more after stopping writers, to pick up what arrived in between."""
import argparse
import sys
import time

from common.settings import get_settings
from common.storage import get_storage, storage_from

PREFIXES = ("sources", "queries", "artifacts", "snapshots")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m common.storage_migrate", description=__doc__)
    parser.add_argument("--to", required=True, help="target storage URL (s3://bucket/prefix or a folder)")
    parser.add_argument("--from", dest="source", default="",
                        help="source storage URL (default: the configured storage, ATTRIB_STORAGE_URL)")
    parser.add_argument("--endpoint-url", default=None,
                        help="S3 endpoint for s3:// URLs (default: ATTRIB_S3_ENDPOINT_URL)")
    parser.add_argument("--prefix", action="append", default=None, help=f"only these key prefixes ({PREFIXES})")
    parser.add_argument("--verify", action="store_true", help="compare bytes of keys already at the target")
    parser.add_argument("--dry-run", action="store_true", help="count what would be copied; copy nothing")
    return parser.parse_args(argv)


def migrate(source, target, prefixes=PREFIXES, *, verify: bool = False, dry_run: bool = False,
            progress=None) -> dict[str, int]:
    """Copy each key under `prefixes` that the target lacks; returns counts (copied, skipped, bytes)."""
    counts = {"copied": 0, "skipped": 0, "bytes": 0}
    for prefix in prefixes:
        for key in source.list(prefix):
            if target.exists(key) and not (verify and target.get(key) != source.get(key)):
                counts["skipped"] += 1
            else:
                data = source.get(key)
                if not dry_run:
                    target.put(key, data)
                counts["copied"] += 1
                counts["bytes"] += len(data)
            if progress:
                progress(key, counts)
    return counts


def _progress_printer(every: int = 500):
    started = time.monotonic()

    def show(key: str, counts: dict[str, int]) -> None:
        done = counts["copied"] + counts["skipped"]
        if done % every == 0:
            print(f"{done} keys ({counts['copied']} copied, {counts['skipped']} already there, "
                  f"{counts['bytes'] / 1e6:.1f} MB) in {time.monotonic() - started:.0f} s; last {key}",
                  file=sys.stderr, flush=True)
    return show


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = get_settings()
    endpoint = settings.s3_endpoint_url if args.endpoint_url is None else args.endpoint_url
    source = storage_from(args.source, endpoint, None) if args.source else get_storage(settings)
    target = storage_from(args.to, endpoint, None)
    print(f"copying {source} -> {target}", file=sys.stderr)
    counts = migrate(source, target, tuple(args.prefix or PREFIXES), verify=args.verify,
                     dry_run=args.dry_run, progress=_progress_printer())
    verb = "would copy" if args.dry_run else "copied"
    print(f"{verb} {counts['copied']} objects ({counts['bytes'] / 1e6:.1f} MB); {counts['skipped']} were "
          f"already at the target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
