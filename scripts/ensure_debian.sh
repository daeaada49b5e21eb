#!/usr/bin/env bash
# Install the Debian packages the project needs, only those whose command is missing.
#   scripts/ensure_debian.sh chromium ffmpeg
# Each argument is a package name, or PACKAGE:COMMAND when the command differs from the name.
# Idempotent: a machine that has every command installs nothing and needs no network.
set -euo pipefail

missing=()
for spec in "$@"; do
  package="${spec%%:*}"
  command="${spec#*:}"
  command -v "$command" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "ensure_debian: need root to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "ensure_debian: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# a stale package index cannot find current versions: refresh it once, then install
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
