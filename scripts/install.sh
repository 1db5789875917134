#!/usr/bin/env bash
# Install system packages (Debian) and the project into .venv. Idempotent: a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c "import venv, ensurepip" 2>/dev/null || need_apt+=(python3-venv)
# The console's browser tests drive Debian's Chromium through Playwright (no browser download).
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  as_root apt-get update -q && as_root apt-get install -y -q "${need_apt[@]}"
fi

stamp=.venv/.installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt constraints.txt ]; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch/torchvision are pinned by constraints.txt so pip never swaps them (see README).
.venv/bin/pip install -q -c constraints.txt -e '.[api,ml,dev,cli]'
touch "$stamp"
