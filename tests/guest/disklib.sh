#!/bin/sh
# Sourced by the guest tests that look for a disk by its serial
# (`. /tests/disklib.sh`); does nothing when run on its own.
#
# dev SERIAL: print the vdX whose serial is SERIAL; else say "NO-DISK
# SERIAL" on stderr and fail.
dev() {
	for _d in /sys/block/vd*; do
		[ -e "$_d" ] || continue
		[ "$(cat "$_d/serial" 2>/dev/null)" = "$1" ] && { echo "${_d##*/}"; return 0; }
	done
	echo "NO-DISK $1" >&2
	return 1
}
