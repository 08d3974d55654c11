#!/bin/sh
# Guest test: the kill -9 durability test (issue 12; tests/lab/guest-tests.sh,
# blk-kill9-durability).  On the disk whose serial is "dur":
#   visor.dur=ROUND            reclog raw: records written with O_DIRECT, a
#                              flush after every 8, "DUR-ACK k" after each
#                              flush, until the host kills visor (or the disk
#                              is full: "DUR-FULL k")
#   visor.durcheck=ROUND:LAST  after a restart: records 0..LAST of ROUND read
#                              back through the guest ("DUR-OK LAST")
set -u
. /tests/disklib.sh
n=$(dev dur) || { echo "DUR-FAILED no disk with serial dur"; exit 1; }
dev=/dev/$n
for w in $(cat /proc/cmdline); do
	case "$w" in
	visor.dur=*)
		echo "DUR-START $dev"
		exec reclog raw "$dev" "${w#visor.dur=}"
		;;
	visor.durcheck=*)
		v=${w#visor.durcheck=}
		exec reclog check-raw "$dev" "${v%%:*}" "${v#*:}"
		;;
	esac
done
echo "DUR-FAILED no visor.dur= or visor.durcheck= on the command line"
exit 1
