#!/bin/sh
# One-shot migration: wait until the database accepts connections, then `alembic upgrade head`.
# Used by the `migrate` compose service; ATTRIB_DB_WAIT_SECONDS bounds the wait (default 60).
set -eu
cd /app
python - <<'PY'
import os, sys, time
from sqlalchemy import create_engine, text
from common.settings import get_settings

url = get_settings().database_url
deadline = time.monotonic() + float(os.environ.get("ATTRIB_DB_WAIT_SECONDS", "60"))
engine = create_engine(url, pool_pre_ping=True)
while True:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        break
    except Exception as exc:
        if time.monotonic() > deadline:
            sys.exit(f"database not reachable: {type(exc).__name__}: {exc}")
        print(f"waiting for the database ({type(exc).__name__})", flush=True)
        time.sleep(2)
engine.dispose()
PY
exec alembic upgrade head
