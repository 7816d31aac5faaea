#!/usr/bin/env bash
# Installs the tap2tap peers (openvswitch-switch, vde2, iperf3) without letting their maintainer scripts
# start system services. On a host without systemd (containers, CI) openvswitch-switch's postinst runs
# `invoke-rc.d openvswitch-switch start`, whose ovs-ctl tries the kernel module and can fail the install
# or leave a system ovsdb-server running; the benchmark never needs it (it runs a private ovsdb-server
# and ovs-vswitchd under its work directory). A temporary policy-rc.d that denies every start (exit 101,
# the Debian convention) is put in place only when none exists, and removed afterwards.
set -euo pipefail
packages=("$@")
[ ${#packages[@]} -eq 0 ] && packages=(openvswitch-switch vde2 iperf3)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (install them as root; the tap2tap peers are reported unavailable)" >&2
  exit 0
fi
policy=/usr/sbin/policy-rc.d
ours=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  ours=1
fi
trap '[ "$ours" -eq 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
