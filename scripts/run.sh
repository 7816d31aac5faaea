# make run: `xenio up` (a supervisor that starts hyperd with xenstored, then netback, consoled and blkback,
# and restarts them),
# boot the example guests, then say how to reach them; `make run STOP=1` runs `xenio down` (domains shut
# down gracefully, then the daemons stop).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "make run needs root: guests are Linux namespaces with their own cgroups and TAP devices." >&2
  echo "Run: sudo make run" >&2
  exit 1
fi
run=${XENIO_RUN_DIR:-/run/xenio}
log=${XENIO_LOG_DIR:-/var/log/xenio}
export XENIO_RUN_DIR=$run XENIO_LOG_DIR=$log
xenio=bin/xenio

if [ "${STOP:-0}" = 1 ]; then exec "$xenio" down --run-dir "$run"; fi
"$xenio" up --run-dir "$run" --log-dir "$log"
for cfg in examples/*.cfg; do
  name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$cfg")
  # Each example's disk: a sparse raw image, created once (blkback serves it; the guest sees /run/xenio/vbd/xvda).
  for image in $(sed -n "s/^disk.*target=\([^',]*\).*/\1/p" "$cfg"); do
    if [ ! -e "$image" ]; then mkdir -p "$(dirname "$image")"; truncate -s 1G "$image"; echo "created disk image $image (1 GiB, sparse)"; fi
  done
  if "$xenio" list --json | grep -q "\"name\":\"$name\""; then continue; fi
  "$xenio" create "$cfg"
done
echo
"$xenio" list
echo
"$xenio" switch show
echo
# consoled attaches each guest's console as it appears: give it a moment, then print how to reach them.
for cfg in examples/*.cfg; do
  name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$cfg")
  port=
  for _ in $(seq 50); do
    port=$("$xenio" console --list --run-dir "$run" 2>/dev/null | awk -v n="$name" '$2 == n { print $3 }')
    [ -n "$port" ] && break
    sleep 0.1
  done
  if [ -n "$port" ]; then echo "console of $name:  telnet 127.0.0.1 $port   (or: $xenio console $name; Ctrl-] detaches)"
  else echo "console of $name: not served yet (see $log/consoled.log)"; fi
done
cat <<MSG

Daemons: hyperd (xenstored inside), netback, consoled and blkback under \`xenio up\`, run directory $run, logs in $log.
  xenstore:   XENSTORED_PATH=$run/xenstored/socket xenstore-ls /local/domain
  a guest:    ip netns exec web sh      (each guest's network namespace is named after it)
  network:    web is 198.18.0.1 and client 198.18.0.2 on xenbr0 (eth0 in each guest, netfront ↔ netback):
              ip netns exec client ping 198.18.0.1
              ip netns exec web iperf3 -s -D; ip netns exec client iperf3 -c 198.18.0.1
  capture:    $xenio capture xenbr0 -w - | tshark -r -
  disks:      each guest's disk is /run/xenio/vbd/xvda inside it (mkfs.ext4, mount); images in /var/lib/xenio/images
  shut down:  $xenio shutdown web -w    destroy: $xenio destroy client
  stop all:   sudo make run STOP=1   (xenio down: shuts the guests down, then the daemons)
MSG
