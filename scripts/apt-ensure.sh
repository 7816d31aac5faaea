#!/usr/bin/env bash
# Installs the named Debian packages that are missing; does nothing when all are present.
# Maintainer scripts may not start system services meanwhile (openvswitch-switch's would start a
# system OVS, which can fail without systemd and which nothing here needs: the benchmarks run a
# private one): a temporary policy-rc.d that denies every start (exit 101, the Debian convention)
# is put in place when none exists, and removed afterwards.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "install them as root (sudo apt-get install ${missing[*]}); tests that need them will be skipped" >&2
  exit 0
fi
echo "installing: ${missing[*]}"
policy=/usr/sbin/policy-rc.d
ours=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  ours=1
fi
trap '[ "$ours" -eq 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
# wireshark-common asks whether non-root users may capture; answer before it asks.
echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections 2>/dev/null || true
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
