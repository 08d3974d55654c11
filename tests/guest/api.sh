#!/bin/sh
# Guest side of tests/lab/api-tests.sh (visor.test=api): a command loop on
# the serial console.  The host writes one line "SEQ STEP ARGS..." at a
# time (after "API-READY" or the previous "STEP-DONE"); the guest runs the
# step, prints its results and then "STEP-DONE SEQ rc=N".  Disks are named
# by their serial (the drive_id).  Steps:
#   info                     CPUS=, MEMTOTAL=, CLOCKSOURCE=, one DISK= line per disk
#   readsum SERIAL [SKIP N]  "READSUM SERIAL SKIP N sha256" of N MiB from MiB SKIP
#                            (O_DIRECT; the whole disk without SKIP N)
#   timed SERIAL SKIP N      read N 256 KiB blocks from block SKIP with O_DIRECT:
#                            "TIMED SERIAL ms=MS"
#   rltest LIM UNL           TIMED for 4 MiB of UNL, then 1 MiB of LIM (drains its
#                            bucket), then TIMED for the next 4 MiB of LIM
#   waitsize SERIAL OLD SECS wait until /sys/block/vdX/size differs from OLD:
#                            "SIZE SERIAL N" (or "SIZE-UNCHANGED SERIAL")
#   net PREFIX               eth0 = PREFIX.2/24, ping PREFIX.1: "MAC=", "PING-OK"
#   ticker                   start api-tool ticker in the background
#   cad                      start api-tool cad (Ctrl-Alt-Del -> reboot) in the background
#   kbd                      KBD-... lines: input devices, serio ports and drivers,
#                            i8042 interrupts, kernel messages about them
#   load-start SERIAL PREFIX record writer on disk SERIAL; with PREFIX also TCP
#                            both ways (loops of 2 MiB transfers, tcp-tool; to
#                            PREFIX.1 port 5001, from the host on port 5002)
#   load-stop                stop them; report every transfer ("G2H SENT ...",
#                            "H2G SINK ..."), the records and their check
#   crng                     wait until the kernel's random generator is initialised
#                            (a read of /dev/random blocks until then): "CRNG-READY"
#   vmgenid ADDR [SECS]      the VM generation ID: "GENID=" the 16 bytes at guest-
#                            physical ADDR in hex (/dev/mem: the page is e820-reserved),
#                            "GENID-DRIVER=" the ACPI device Linux's vmgenid driver
#                            bound (or "none"), "RESEEDS=" how often the kernel said
#                            "crng reseeded due to virtual machine fork"; with SECS,
#                            first wait up to SECS s for that message
#   urandom                  "URANDOM=" 16 bytes of /dev/urandom in hex
#   date                     "DATE=" the guest's wall clock, seconds since the epoch
#   reread-start SERIAL      api-tool blkreread on disk SERIAL in the background
#                            (its REREAD-PASS lines on the console): pages only
#                            virtio-blk writes, for the Diff snapshot test
#   reread-stop              stop it: "REREAD-DONE passes=n bad=m"
#   poweroff
stty -echo 2>/dev/null
ip link set lo up 2>/dev/null

# dev SERIAL: the vdX whose serial is SERIAL
. /tests/disklib.sh

timed() {
	_d=$(dev "$1") || return 1
	_t0=$(api-tool mono)
	dd if="/dev/$_d" of=/dev/null bs=262144 iflag=direct skip="$2" count="$3" 2>/dev/null || return 1
	_t1=$(api-tool mono)
	echo "TIMED $1 ms=$((_t1 - _t0))"
}

load_pids=""
step() {
	cmd=$1
	shift
	case "$cmd" in
	info)
		echo "CPUS=$(grep -c ^processor /proc/cpuinfo)"
		echo "MEMTOTAL=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo)"
		echo "CLOCKSOURCE=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
		for d in /sys/block/vd*; do
			[ -e "$d" ] || continue
			echo "DISK=${d##*/} size=$(cat "$d/size") serial=$(cat "$d/serial" 2>/dev/null) ro=$(cat "$d/ro")"
		done
		echo "NICS=$(ls /sys/class/net | grep -v '^lo$' | tr '\n' ' ')"
		;;
	readsum)
		d=$(dev "$1") || return 1
		if [ $# -ge 3 ]; then
			s=$(dd if="/dev/$d" bs=1048576 iflag=direct skip="$2" count="$3" 2>/dev/null | sha256sum | cut -d' ' -f1)
			echo "READSUM $1 $2 $3 $s"
		else
			s=$(dd if="/dev/$d" bs=1048576 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
			echo "READSUM $1 all $s"
		fi
		;;
	timed) timed "$@" ;;
	rltest)
		timed "$2" 4 16 || return 1
		dd if="/dev/$(dev "$1")" of=/dev/null bs=262144 iflag=direct count=4 2>/dev/null || return 1
		timed "$1" 4 16
		;;
	waitsize)
		d=$(dev "$1") || return 1
		i=0
		while [ "$(cat "/sys/block/$d/size")" = "$2" ]; do
			i=$((i + 1))
			if [ $i -gt $(($3 * 5)) ]; then
				echo "SIZE-UNCHANGED $1"
				return 1
			fi
			sleep 0.2
		done
		echo "SIZE $1 $(cat "/sys/block/$d/size")"
		;;
	net)
		ip link set eth0 up || return 1
		ip addr add "$1.2/24" dev eth0
		echo "MAC=$(cat /sys/class/net/eth0/address)"
		i=0
		until ping -c 1 -W 1 "$1.1" >/dev/null 2>&1; do
			i=$((i + 1))
			[ $i -gt 90 ] && { echo "PING-FAILED"; return 1; }
		done
		ping -c 3 -W 2 "$1.1" >/dev/null && echo "PING-OK"
		;;
	ticker)
		api-tool ticker &
		echo "TICKER-STARTED $!"
		;;
	cad)
		api-tool cad &
		i=0
		# (the tool prints CAD-ARMED itself)
		while [ $i -lt 50 ] && [ "$(cat /proc/sys/kernel/cad_pid)" != "$!" ]; do
			sleep 0.2
			i=$((i + 1))
		done
		[ "$(cat /proc/sys/kernel/cad_pid)" = "$!" ]
		;;
	load-start)
		d=$(dev "$1") || return 1
		rm -f /tmp/stop
		# progress on the console as well (the host watches it)
		api-tool blkwrite "/dev/$d" /tmp/stop $(($(cat "/sys/block/$d/size") / 128)) | tee /tmp/writer.out &
		load_pids=$!
		load_dev=$d
		if [ $# -ge 2 ]; then
			h=$2.1
			(
				while [ ! -e /tmp/stop ]; do
					tcp-tool send "$h" 5001 2097152 || { echo "SEND-FAILED rc=$? at $(api-tool mono) ms"; break; }
				done
				tcp-tool send "$h" 5001 0
			) >/tmp/g2h.out 2>&1 &
			load_pids="$load_pids $!"
			(
				f=0
				while [ $f -lt 50 ]; do
					o=$(tcp-tool sink 5002 2>&1)
					echo "$o" | grep -v '^LISTENING'
					case "$o" in
					*"SINK bytes=0 "*) break ;;
					*SINK*) ;;
					*) f=$((f + 1)); sleep 0.2 ;;
					esac
				done
			) >/tmp/h2g.out 2>&1 &
			load_pids="$load_pids $!"
		fi
		echo "LOAD-STARTED"
		;;
	load-stop)
		touch /tmp/stop
		for p in $load_pids; do wait "$p"; done
		sed 's/^/G2H /' /tmp/g2h.out 2>/dev/null
		sed 's/^/H2G /' /tmp/h2g.out 2>/dev/null
		cat /tmp/writer.out
		n=$(sed -n 's/^WRITER-DONE records=\([0-9]*\).*/\1/p' /tmp/writer.out)
		[ -n "$n" ] || return 1
		api-tool blkverify "/dev/$load_dev" "$n" || return 1
		s=$(dd if="/dev/$load_dev" bs=65536 iflag=direct count="$n" 2>/dev/null | sha256sum | cut -d' ' -f1)
		echo "RECORDS-SUM $n $s"
		;;
	reread-start)
		d=$(dev "$1") || return 1
		rm -f /tmp/reread.stop
		api-tool blkreread "/dev/$d" /tmp/reread.stop | tee /tmp/reread.out &
		reread_pid=$!
		echo "REREAD-STARTED"
		;;
	reread-stop)
		touch /tmp/reread.stop
		[ -n "${reread_pid:-}" ] && wait "$reread_pid"
		grep '^REREAD-DONE' /tmp/reread.out
		grep -q '^REREAD-DONE .* bad=0$' /tmp/reread.out
		;;
	kbd) # what the guest made of the i8042 and its keyboard
		echo "KBD-INPUT $(sed -n 's/^N: Name=//p' /proc/bus/input/devices | tr '\n' ' ')"
		for sd in /sys/bus/serio/devices/*; do
			[ -e "$sd" ] || continue
			drv=$(readlink "$sd/driver" 2>/dev/null)
			echo "KBD-SERIO ${sd##*/} $(cat "$sd/description" 2>/dev/null) driver=${drv##*/}"
		done
		echo "KBD-IRQ $(grep i8042 /proc/interrupts | tr -s ' ')"
		echo "KBD-CAD-PID $(cat /proc/sys/kernel/cad_pid)"
		dmesg | grep -i -E 'i8042|atkbd|serio|keyboard' | tail -n 6 | sed 's/^/KBD-DMESG /'
		;;
	crng)
		dd if=/dev/random of=/dev/null bs=16 count=1 2>/dev/null || return 1
		echo "CRNG-READY"
		;;
	vmgenid)
		id=$(dd if=/dev/mem bs=16 skip=$(($1 / 16)) count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
		echo "GENID=${id:-unreadable}"
		drv=none
		for d in /sys/bus/acpi/drivers/vmgenid/*:*; do
			[ -e "$d" ] && drv=${d##*/}
		done
		echo "GENID-DRIVER=$drv"
		msg='crng reseeded due to virtual machine fork'
		end=$(($(date +%s) + ${2:-0}))
		while ! dmesg | grep -q "$msg" && [ "$(date +%s)" -lt "$end" ]; do
			sleep 0.2
		done
		echo "RESEEDS=$(dmesg | grep -c "$msg")"
		;;
	urandom) echo "URANDOM=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" ;;
	date) echo "DATE=$(date +%s)" ;;
	poweroff) poweroff -f ;;
	*)
		echo "UNKNOWN-STEP $cmd"
		return 1
		;;
	esac
}

echo "API-READY"
while IFS= read -r line; do
	set -- $line
	[ $# -ge 2 ] || continue
	seq=$1
	shift
	step "$@"
	echo "STEP-DONE $seq rc=$?"
done
echo "API-EOF"
