#!/usr/bin/env bash
# make run: start hyperd (with xenstored) and netback in the background, boot the example guests,
# then say how to reach them. `xenio up` (a supervisor for every daemon) is not built yet, so this
# script starts the two daemons that exist itself; `make run STOP=1` stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "make run needs root: guests are Linux namespaces with their own cgroups and TAP devices." >&2
  echo "Run: sudo make run" >&2
  exit 1
fi
run=${XENIO_RUN_DIR:-/run/xenio}
log=${XENIO_LOG_DIR:-/var/log/xenio}
export XENIO_RUN_DIR=$run
mkdir -p "$run" "$log"
xenio=bin/xenio

stop() {
  for daemon in netback hyperd; do
    pid=$(pgrep -f "xenio $daemon --run-dir $run" || true)
    [ -n "$pid" ] && kill $pid && echo "stopped $daemon ($pid)"
  done
  return 0
}
if [ "${STOP:-0}" = 1 ]; then stop; exit 0; fi

wait_for() { # socket, name
  for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done
  echo "$2 did not start: see $log/$2.log" >&2
  exit 1
}
if [ ! -S "$run/hyperd.sock" ]; then
  setsid "$xenio" hyperd --run-dir "$run" >>"$log/hyperd.log" 2>&1 < /dev/null &
  wait_for "$run/hyperd.sock" hyperd
fi
if [ ! -S "$run/netback.sock" ]; then
  setsid "$xenio" netback --run-dir "$run" >>"$log/netback.log" 2>&1 < /dev/null &
  wait_for "$run/netback.sock" netback
fi
for cfg in examples/*.cfg; do
  name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$cfg")
  if "$xenio" list --json | grep -q "\"name\":\"$name\""; then continue; fi
  "$xenio" create "$cfg"
done
echo
"$xenio" list
echo
"$xenio" switch show
cat <<MSG

Daemons: hyperd (xenstored inside) and netback, run directory $run, logs in $log.
  xenstore:   XENSTORED_PATH=$run/xenstored/socket xenstore-ls /local/domain
  a guest:    ip netns exec web sh      (each guest's network namespace is named after it)
  capture:    $xenio capture xenbr0 -w - | tshark -r -
  shut down:  $xenio shutdown web -w    destroy: $xenio destroy client
  stop all:   sudo make run STOP=1
Not wired yet: guests' vifs to the switch (netfront/netback), their disks and telnet consoles.
MSG
