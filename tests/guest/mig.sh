#!/bin/sh
# Guest side of the live-migration tests and benchmark (visor.test=mig;
# tests/lab/migrate-tests.sh, bench/migrate): a command loop on the
# serial console, as tests/guest/api.sh.  The host writes one line
# "SEQ STEP ARGS..." at a time (after "MIG-READY" or the previous
# "STEP-DONE"); the guest runs the step, prints its results and then
# "STEP-DONE SEQ rc=N".  After a migration the loop goes on reading the
# destination's console: the host sends the next step there.  Steps:
#   info                    CPUS=, MEMTOTAL=, CLOCKSOURCE=, MAC=, one DISK= line per disk
#   net ADDR/PFX PEER       eth0 up with ADDR, ping PEER until it answers: "PING-OK"
#   ping ADDR [N]           N pings (default 3): "PING-OK" or "PING-FAILED"
#   gap-start [REF]         gapmeter in the background (with -r REF: ADDR:PORT of
#                           the peer's time server): "GAP-STARTED"
#   gap-reset / gap-report  the current window's "GAP ..." line (gap-reset also
#                           starts a new window)
#   gap-stop                the last "GAP ..." line; gapmeter ends
#   dirty-start MIB RATE [full]  dirtier in the background; waits for its
#                           "DIRTIER-READY ..." line
#   dirty-stop              "DIRTIER-DONE ..." (and the last progress line)
#   hold-start HOST PORT    tcp-tool hold in the background (one TCP connection,
#                           a message every 10 ms): "HOLD-CONNECTED ..."
#   hold-status             its last "HOLD-PROGRESS ..." line
#   hold-stop               "HOLD-DONE ..." (rc 0) or "HOLD-FAILED ..." (rc 1)
#   rec-start SERIAL        an ext2 file system on the disk whose serial is SERIAL,
#                           mounted on /mnt/rec; reclog appends records to
#                           /mnt/rec/log (fsync each, at most one per 5 ms):
#                           "RECLOG-STARTED"
#   rec-status              "RECLOG-COUNT n": the records in the file so far
#   rec-stop                "RECLOG-DONE records=n", then the check: "RECLOG-OK n"
#                           (rc 0) or "RECLOG-BAD ..." (rc 1); a failed write
#                           ("RECLOG-FAILED ...") fails it too
#   rec-selftest            the checker on copies of the log with one record doubled
#                           and one lost: "RECLOG-SELFTEST-OK" when it flags both
#   ticker-start / ticker-stop  api-tool ticker: "TICK n ms" lines on the console
#                           every 100 ms (n counts from 1, ms is CLOCK_MONOTONIC)
#   mono                    "MONO=" CLOCK_MONOTONIC in ms
#   poweroff
stty -echo 2>/dev/null
ip link set lo up 2>/dev/null

# dev SERIAL: the vdX whose serial is SERIAL
. /tests/disklib.sh

# lines FILE: its line count
lines() { wc -l <"$1" 2>/dev/null || echo 0; }

# await FILE REGEX SECS: until a line of FILE matches
await() {
	_i=0
	while ! grep -q -E "$2" "$1" 2>/dev/null; do
		_i=$((_i + 1))
		[ $_i -gt $(($3 * 10)) ] && return 1
		sleep 0.1
	done
}

# gapline SIGNAL: ask gapmeter for its report, print it
gapline() {
	[ -n "${gap_pid:-}" ] || { echo "GAP-NOT-RUNNING"; return 1; }
	_n=$(lines /tmp/gap.out)
	kill "-$1" "$gap_pid" || return 1
	_i=0
	while [ "$(lines /tmp/gap.out)" -le "$_n" ]; do
		_i=$((_i + 1))
		[ $_i -gt 600 ] && { echo "GAP-NO-REPORT"; return 1; }
		sleep 0.1
	done
	tail -n 1 /tmp/gap.out
}

step() {
	cmd=$1
	shift
	case "$cmd" in
	info)
		echo "CPUS=$(grep -c ^processor /proc/cpuinfo)"
		echo "MEMTOTAL=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo)"
		echo "CLOCKSOURCE=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
		echo "MAC=$(cat /sys/class/net/eth0/address 2>/dev/null)"
		for d in /sys/block/vd*; do
			[ -e "$d" ] || continue
			echo "DISK=${d##*/} size=$(cat "$d/size") serial=$(cat "$d/serial" 2>/dev/null)"
		done
		;;
	net)
		ip link set eth0 up || return 1
		ip addr add "$1" dev eth0 || return 1
		i=0
		until ping -c 1 -W 1 "$2" >/dev/null 2>&1; do
			i=$((i + 1))
			[ $i -gt 90 ] && { echo "PING-FAILED"; return 1; }
		done
		echo "PING-OK"
		;;
	ping)
		if ping -c "${2:-3}" -W 2 "$1" >/tmp/ping.out 2>&1; then
			echo "PING-OK"
		else
			echo "PING-FAILED $(tail -n 2 /tmp/ping.out | tr '\n' ' ')"
			return 1
		fi
		;;
	gap-start)
		: >/tmp/gap.out
		if [ $# -ge 1 ]; then gapmeter -r "$1" >/tmp/gap.out 2>&1 & else gapmeter >/tmp/gap.out 2>&1 & fi
		gap_pid=$!
		sleep 0.2
		kill -0 "$gap_pid" 2>/dev/null || { cat /tmp/gap.out; return 1; }
		echo "GAP-STARTED $gap_pid"
		;;
	gap-reset) gapline USR2 ;;
	gap-report) gapline USR1 ;;
	gap-stop)
		gapline TERM || return 1
		wait "$gap_pid"
		gap_pid=""
		;;
	dirty-start)
		rm -f /tmp/dirty.stop
		: >/tmp/dirty.out
		dirtier "$1" "$2" /tmp/dirty.stop ${3:+"$3"} >/tmp/dirty.out 2>&1 &
		dirty_pid=$!
		# (prefaulting a large buffer takes long in the lab)
		await /tmp/dirty.out '^DIRTIER-(READY|FAILED)' 1200 || { echo "DIRTIER-NOT-READY"; return 1; }
		grep '^DIRTIER-' /tmp/dirty.out
		grep -q '^DIRTIER-READY' /tmp/dirty.out
		;;
	dirty-stop)
		touch /tmp/dirty.stop
		wait "$dirty_pid"
		grep '^DIRTIER-PROGRESS' /tmp/dirty.out | tail -n 1
		grep '^DIRTIER-DONE' /tmp/dirty.out
		;;
	hold-start)
		rm -f /tmp/hold.stop
		: >/tmp/hold.out
		tcp-tool hold "$1" "$2" /tmp/hold.stop >/tmp/hold.out 2>&1 &
		hold_pid=$!
		await /tmp/hold.out '^HOLD-(CONNECTED|FAILED)' 120
		grep '^HOLD-' /tmp/hold.out
		grep -q '^HOLD-CONNECTED' /tmp/hold.out
		;;
	hold-status)
		grep '^HOLD-PROGRESS' /tmp/hold.out | tail -n 1
		grep '^HOLD-FAILED' /tmp/hold.out && return 1
		kill -0 "$hold_pid" 2>/dev/null
		;;
	hold-stop)
		touch /tmp/hold.stop
		wait "$hold_pid"
		r=$?
		grep -E '^HOLD-(DONE|FAILED)' /tmp/hold.out || echo "HOLD-FAILED no result (exit $r)"
		return $r
		;;
	rec-start)
		d=$(dev "$1") || return 1
		mkdir -p /mnt/rec
		mke2fs -F -b 4096 "/dev/$d" >/tmp/mkfs.out 2>&1 || { cat /tmp/mkfs.out; return 1; }
		mount -t ext2 "/dev/$d" /mnt/rec || return 1
		rm -f /tmp/rec.stop
		: >/tmp/rec.out
		# (a record every 5 ms at most: a long test does not fill the disk)
		reclog append /mnt/rec/log /tmp/rec.stop 5 >/tmp/rec.out 2>&1 &
		rec_pid=$!
		rec_dev=$d
		echo "RECLOG-STARTED on /dev/$d"
		;;
	rec-status)
		echo "RECLOG-COUNT $(($(stat -c %s /mnt/rec/log) / 4096))"
		grep '^RECLOG-FAILED' /tmp/rec.out && return 1
		kill -0 "$rec_pid" 2>/dev/null
		;;
	rec-stop)
		touch /tmp/rec.stop
		wait "$rec_pid"
		grep -E '^RECLOG-(DONE|FAILED)' /tmp/rec.out
		n=$(sed -n 's/^RECLOG-DONE records=\([0-9]*\)$/\1/p' /tmp/rec.out)
		[ -n "$n" ] || return 1
		grep -q '^RECLOG-FAILED' /tmp/rec.out && return 1
		# what the disk holds, not the page cache: unmount, drop the
		# caches, mount again
		umount /mnt/rec || return 1
		echo 3 >/proc/sys/vm/drop_caches
		mount -t ext2 "/dev/$rec_dev" /mnt/rec || return 1
		reclog check /mnt/rec/log "$n"
		;;
	rec-selftest)
		n=$(sed -n 's/^RECLOG-DONE records=\([0-9]*\)$/\1/p' /tmp/rec.out)
		[ -n "$n" ] && [ "$n" -ge 4 ] || { echo "RECLOG-SELFTEST needs a stopped log of 4+ records"; return 1; }
		h=$((n / 2))
		{ dd if=/mnt/rec/log bs=4096 count=$h; dd if=/mnt/rec/log bs=4096 skip=$((h - 1)); } 2>/dev/null >/tmp/doubled
		{ dd if=/mnt/rec/log bs=4096 count=$h; dd if=/mnt/rec/log bs=4096 skip=$((h + 1)); } 2>/dev/null >/tmp/lost
		d1=$(reclog check /tmp/doubled "$n")
		l1=$(reclog check /tmp/lost "$n")
		echo "doubled: $d1"
		echo "lost: $l1"
		rm -f /tmp/doubled /tmp/lost
		case "$d1$l1" in *RECLOG-OK*) echo "RECLOG-SELFTEST-FAILED"; return 1 ;; esac
		echo "RECLOG-SELFTEST-OK"
		;;
	ticker-start)
		api-tool ticker &
		ticker_pid=$!
		echo "TICKER-STARTED $ticker_pid"
		;;
	ticker-stop)
		kill "$ticker_pid"
		wait "$ticker_pid" 2>/dev/null
		echo "TICKER-STOPPED"
		;;
	mono) echo "MONO=$(api-tool mono)" ;;
	poweroff) poweroff -f ;;
	*)
		echo "UNKNOWN-STEP $cmd"
		return 1
		;;
	esac
}

echo "MIG-READY"
while IFS= read -r line; do
	set -- $line
	[ $# -ge 2 ] || continue
	seq=$1
	shift
	step "$@"
	echo "STEP-DONE $seq rc=$?"
done
echo "MIG-EOF"
