"""`attrib sweep` (admin): delete finished jobs past retention now, with their matches, deliveries and
query files (workers also sweep every ATTRIB_RETENTION_SWEEP_INTERVAL_S)."""
import argparse

from common.db.session import new_session
from common.retention import sweep_expired_jobs
from common.settings import get_settings
from common.storage import get_storage


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="attrib sweep", description=__doc__)
    parser.add_argument("--days", type=float, default=settings.job_retention_days,
                        help="retention in days (default ATTRIB_JOB_RETENTION_DAYS; 0 keeps everything)")
    args = parser.parse_args(argv)
    with new_session() as session:
        deleted = sweep_expired_jobs(session, get_storage(settings), retention_days=args.days)
    print(f"deleted {deleted} finished jobs older than {args.days:g} days" if args.days > 0
          else "retention is off (0 days): nothing deleted")
    return 0
