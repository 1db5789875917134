#!/usr/bin/env bash
# Install the offline distractor sources used by bench/make_crossdomain.py.
# Idempotent: apt-get and pip skip what is already installed. Run as root (apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(openclipart-png tuxpaint-stamps-default plasma-workspace-wallpapers mate-backgrounds)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

# scikit-image ships ~24 real photos in skimage/data; only the bench needs it.
PY=${PYTHON:-.venv/bin/python}
if ! "$PY" -c "import skimage" 2>/dev/null; then
  if [ -f constraints.txt ]; then
    "$PY" -m pip install -c constraints.txt scikit-image || echo "scikit-image not installed; skipping its photos"
  else
    "$PY" -m pip install scikit-image || echo "scikit-image not installed; skipping its photos"
  fi
fi
