#!/bin/sh
# Guest test: host-side faults (issue 12; tests/lab/guest-tests.sh,
# host-faults).  Prints FAULTS-READY and waits for a line on the console
# (the host deletes the VM's tap meanwhile); then writes 4 MiB with
# O_DIRECT and a flush to the disk whose serial is "full" (its image lives
# on a 1 MiB file system): "FAULTS-DISK-ERROR" when the write fails, as it
# must, else "FAULTS-DISK-OK"; then "FAULTS-ALIVE" and waits for one more
# line (the host snapshots to a read-only directory and resumes meanwhile),
# then "FAULTS-DONE".
set -u
. /tests/disklib.sh
n=$(dev full) || { echo "FAULTS-FAILED no disk with serial full"; exit 1; }
dev=/dev/$n
# the interface up: its driver posts receive buffers, so visor watches the
# tap (and sees it go)
ip link set eth0 up || { echo "FAULTS-FAILED eth0 does not come up"; exit 1; }
echo "FAULTS-READY"
read -r _go
if dd if=/dev/urandom of="$dev" bs=65536 count=64 oflag=direct conv=fsync 2>/tmp/dd.err; then
	echo "FAULTS-DISK-OK"
else
	echo "FAULTS-DISK-ERROR $(tail -n 1 /tmp/dd.err)"
fi
echo "FAULTS-ALIVE"
read -r _go
echo "FAULTS-DONE"
