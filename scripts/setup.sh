#!/usr/bin/env bash
# Set up everything codesign needs on a fresh Debian 12 machine with Python 3.11 and root:
# Debian packages (compiler, make, perl for Verilator, ccache, Yosys, Icarus) and a local
# virtual environment (.venv) with the pinned Python stack from requirements.lock.
# `--test` adds what only the tests need (Debian's chromium). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(g++ make perl ccache yosys iverilog git)
if [ "${1:-}" = "--test" ]; then
  DEB_PACKAGES+=(chromium)  # the report-in-a-browser tests (tests/test_browser.py)
fi
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.codesign-installed
if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages (pinned in requirements.lock)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  touch "$stamp"
fi
echo "setup: ok"
