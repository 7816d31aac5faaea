#!/usr/bin/env bash
# make run: start XenIo's daemons and the example guests, then say how to reach them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "make run needs root: guests are Linux namespaces with TAP devices. Run: sudo make run" >&2
  exit 1
fi
if ! bin/xenio --help 2>/dev/null | grep -q '^\s*up\b'; then
  echo "bin/xenio has no 'up' verb in this build: the daemons are not part of it yet." >&2
  bin/xenio --help
  exit 1
fi
bin/xenio up
for cfg in examples/*.cfg; do bin/xenio create "$cfg"; done
bin/xenio list
