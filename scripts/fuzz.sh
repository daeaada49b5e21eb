#!/usr/bin/env sh
# Fuzz the whole OpenAPI document with schemathesis (no 5xx, responses match their schemas).
# See docs/security.md. Arguments are passed to scripts/fuzz.py (--help for the list).
set -e
cd "$(dirname "$0")/.."
exec "${VENV:-.venv}/bin/python" scripts/fuzz.py "$@"
