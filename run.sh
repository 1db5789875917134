#!/usr/bin/env bash
# One entry point for a fresh Debian machine (run as root or with sudo available):
#   ./run.sh demo    install everything, start the stack on the embedded defaults, run the demo
#   ./run.sh test    install everything, make sure PostgreSQL and Redis run, run the test suite
#   ./run.sh stop    stop the API and workers the demo left running
set -euo pipefail
cd "$(dirname "$0")"

case "${1:-}" in
  demo)
    scripts/install.sh
    scripts/services.sh redis
    scripts/stack.sh start
    .venv/bin/python -m demo "${@:2}"
    echo "The stack keeps running: API on http://127.0.0.1:${ATTRIB_PORT:-8000}/docs — stop it with ./run.sh stop"
    ;;
  test)
    scripts/install.sh
    scripts/services.sh redis postgres
    .venv/bin/python -m pytest "${@:2}"
    ;;
  stop)
    scripts/stack.sh stop
    ;;
  *)
    echo "usage: ./run.sh {demo|test|stop} [args]" >&2
    exit 2
    ;;
esac
