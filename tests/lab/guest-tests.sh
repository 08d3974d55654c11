#!/bin/sh
# Linux-guest tests of visor: boots the default guest appliance (tools/mkguest)
# in many ways and feeds visor bad inputs.  Runs inside the lab's L1 (busybox
# sh) or directly on a host with VT-x/AMD-V.
#
#   tests/lab/guest-tests.sh DIR
#
# DIR holds `visor` and `guest/` (vmlinuz, vmlinux, initrd.cpio.gz).
# Prints "PASS name" or "FAIL name: reason" per scenario and ends with
# "lab: N passed, N failed"; exits non-zero when anything failed.
# GUEST_TESTS_TIMEOUT (default 300) limits each guest boot, in seconds.
set -u

. "$(dirname "$0")/lib.sh"

# --- boots -------------------------------------------------------------------
for n in 1 2 4; do
	name="cpus-$n"
	run "$name" "$TMO" run --kernel "$BZ" --initrd "$INITRD" --cpus "$n" --memory 256M \
		--cmdline "$BASE visor.test=cpus"
	expect_boot "$name" 0 && expect_result "$name" cpus || continue
	got=$(value "$name" CPUS)
	if [ "$got" = "$n" ]; then
		ok "$name" "bzImage, boot marker at $(marker "$name") ms"
	else
		bad "$name" "guest sees ${got:-no} CPUs, expected $n"
		show "$name"
	fi
done

# mem_check NAME MiB KERNEL: MemTotal within 20% below the configured size.
mem_check() {
	run "$1" "$TMO" run --kernel "$3" --initrd "$INITRD" --memory "$2M" \
		--cmdline "$BASE visor.test=mem"
	expect_boot "$1" 0 && expect_result "$1" mem || return
	kb=$(value "$1" MEMKB)
	max=$(($2 * 1024))
	min=$((max * 8 / 10))
	if [ -n "$kb" ] && [ "$kb" -le "$max" ] && [ "$kb" -ge "$min" ]; then
		ok "$1" "MemTotal $kb kB of $max kB, boot marker at $(marker "$1") ms"
	else
		bad "$1" "MemTotal ${kb:-?} kB, expected $min..$max kB"
		show "$1"
	fi
}
mem_check mem-256M 256 "$BZ"
mem_check elf-vmlinux-512M 512 "$ELF"

# --- guest-initiated exits -------------------------------------------------------
# action NAME ACTION RC
action() {
	run "$1" "$TMO" run --kernel "$BZ" --initrd "$INITRD" --cmdline "$BASE visor.action=$2"
	expect_boot "$1" "$3" && ok "$1" "exit $3"
}
action poweroff poweroff 0
action reboot reboot 2
action panic panic 3

# --- console input ---------------------------------------------------------------
# Send the line only once the guest is reading (bytes sent before the guest's
# UART driver is up may be dropped by a real 16550 as well).
echo_test() {
	n=console-echo
	line="hello visor $$"
	rm -f "$T/in"
	mkfifo "$T/in" || { bad $n "mkfifo failed"; return; }
	timeout "$TMO" "$VISOR" run --kernel "$BZ" --initrd "$INITRD" \
		--cmdline "$BASE visor.test=echo" <"$T/in" >"$T/$n.out" 2>"$T/$n.err" &
	vpid=$!
	exec 5>"$T/in"
	i=0
	while [ $i -lt "$TMO" ]; do
		grep -q ECHO-READY "$T/$n.out" 2>/dev/null && break
		kill -0 $vpid 2>/dev/null || break
		sleep 1
		i=$((i + 1))
	done
	(trap '' PIPE; printf '%s\n' "$line" >&5) 2>/dev/null
	wait $vpid
	rc=$?
	exec 5>&-
	expect_boot $n 0 && expect_result $n echo || return
	if tr -d '\r' <"$T/$n.out" | grep -qx "ECHO:$line"; then
		ok $n
	else
		bad $n "guest did not echo the line"
		show $n
	fi
}
echo_test

# --- kill -9 while the guest writes and flushes (issue 12) ------------------------
# DUR_ROUNDS rounds (default 10): a guest writes records to a raw disk
# (O_DIRECT, a FLUSH after every 8, "DUR-ACK k" on its console after each
# flush); visor is killed with SIGKILL at a random moment 1-4 s after the
# first acknowledgement; every record the guest saw acknowledged must be in
# the image (lab-tools/reclog check-raw).  After the last round a new visor
# boots on the image and the guest reads the records back itself.
durability_test() {
	n=blk-kill9-durability
	RECLOG="$DIR/lab-tools/reclog"
	if [ ! -x "$RECLOG" ]; then
		echo "SKIP $n: no $RECLOG (make lab-tools)"
		return
	fi
	img="$T/dur.img"
	rm -f "$img"
	truncate -s 256M "$img"
	rounds=${DUR_ROUNDS:-10} r=1 why="" acks="" kills=""
	while [ $r -le "$rounds" ] && [ -z "$why" ]; do
		out="$T/$n.$r.out"
		TMPDIR=$T "$VISOR" run --kernel "$BZ" --initrd "$INITRD" --memory 256M \
			--disk "$img,id=dur" --cmdline "$BASE visor.test=dur visor.dur=$r" \
			</dev/null >"$out" 2>"$T/$n.err" &
		vp=$!
		i=0
		while [ $i -lt "$((TMO * 5))" ] && ! grep -q '^DUR-ACK' "$out" 2>/dev/null &&
			kill -0 $vp 2>/dev/null; do
			sleep 0.2
			i=$((i + 1))
		done
		if ! grep -q '^DUR-ACK' "$out"; then
			kill -9 $vp 2>/dev/null
			wait $vp 2>/dev/null
			why="round $r: no acknowledged write: $(tr -d '\r' <"$out" | grep -E 'DUR-|VISOR-TEST' | tail -n 2 | tr '\n' ' ')"
			break
		fi
		# a random moment 1.0-4.9 s after the first acknowledgement
		ms=$(awk -v s="$r$$" 'BEGIN { srand(); print 1000 + int(rand() * 100000 + s) % 4000 }')
		sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
		kill -9 $vp
		wait $vp 2>/dev/null
		last=$(tr -d '\r' <"$out" | sed -n 's/^DUR-ACK \([0-9]*\)$/\1/p' | tail -n 1)
		if tr -d '\r' <"$out" | grep -q '^DUR-FULL'; then
			why="round $r: the disk filled before the kill (make the image larger)"
			break
		fi
		res=$("$RECLOG" check-raw "$img" "$r" "$last")
		case "$res" in
		DUR-OK*) acks="$acks $last" kills="$kills ${ms}ms" ;;
		*) why="round $r: killed ${ms} ms in, $last acknowledged: $res" ;;
		esac
		r=$((r + 1))
	done
	if [ -z "$why" ]; then
		# a restart: the guest itself reads back what the last round acknowledged
		rr=$((r - 1))
		run "$n-restart" "$TMO" run --kernel "$BZ" --initrd "$INITRD" --memory 256M \
			--disk "$img,id=dur" --cmdline "$BASE visor.test=dur visor.durcheck=$rr:$last"
		tr -d '\r' <"$T/$n-restart.out" | grep -q "^DUR-OK $last\$" ||
			why="after a restart the guest did not read back the $last records of round $rr: $(tr -d '\r' <"$T/$n-restart.out" | grep -E 'DUR-' | tail -n 1)"
	fi
	if [ -n "$why" ]; then
		bad $n "$why"
		show $n
	else
		ok $n "$rounds rounds, killed at$kills; acknowledged records all in the image:$acks; read back by the guest after a restart"
	fi
}
durability_test

# --- host-side faults under a running VM (issue 12) -------------------------------
# The VM's disk image lives on a 1 MiB tmpfs (16 MiB sparse: the guest's
# 4 MiB write runs out of space), its tap is deleted under it, and a
# snapshot is asked for into a read-only directory.  Each gives a clear
# error (visor's log: the disk write failed with "No space left on device",
# the tap's link went down; the snapshot request: 400 naming the problem)
# and the VM keeps running: the guest reports the I/O error to its own
# program, goes on answering on its console, and powers off normally.
host_faults_test() {
	n=host-faults
	why=""
	command -v curl >/dev/null || { echo "SKIP $n: no curl"; return; }
	[ "$(id -u)" = 0 ] || { echo "SKIP $n: needs root (tmpfs mounts, taps)"; return; }
	mkdir -p "$T/small" "$T/ro"
	if ! mount -t tmpfs -o size=1m tmpfs "$T/small" || ! mount -t tmpfs -o ro,size=1m tmpfs "$T/ro"; then
		echo "SKIP $n: cannot mount a tmpfs"
		return
	fi
	truncate -s 16M "$T/small/full.img"
	rm -f "$T/hf.in" "$T/hf.sock"
	mkfifo "$T/hf.in"
	TMPDIR=$T "$VISOR" run --kernel "$BZ" --initrd "$INITRD" --memory 256M \
		--disk "$T/small/full.img,id=full" --net tap=hftap0 --api-sock "$T/hf.sock" \
		--cmdline "$BASE visor.test=faults" <"$T/hf.in" >"$T/$n.out" 2>"$T/$n.err" &
	vp=$!
	exec 6>"$T/hf.in"
	hf_wait() { # hf_wait PATTERN: the console shows it (TMO s at most)
		_i=0
		while [ $_i -lt "$((TMO * 5))" ] && ! tr -d '\r' <"$T/$n.out" | grep -q "$1"; do
			kill -0 $vp 2>/dev/null || return 1
			sleep 0.2
			_i=$((_i + 1))
		done
		tr -d '\r' <"$T/$n.out" | grep -q "$1"
	}
	hf_api() { # hf_api METHOD PATH [BODY]: sets code, resp
		code=$(curl -sS --max-time 60 --unix-socket "$T/hf.sock" -X "$1" -H 'Content-Type: application/json' \
			${3:+-d "$3"} -o "$T/hf.resp" -w '%{http_code}' "http://localhost$2" 2>/dev/null)
		resp=$(cat "$T/hf.resp" 2>/dev/null)
	}
	hf_wait FAULTS-READY || why="the guest never got ready"
	if [ -z "$why" ]; then
		ip link del hftap0 || why="cannot delete the tap"
		sleep 2
		kill -0 $vp 2>/dev/null || why="visor died when its tap was deleted"
	fi
	if [ -z "$why" ]; then
		hf_api GET /
		case "$resp" in *Running*) ;; *) why="after the tap went: GET / $code $resp" ;; esac
	fi
	if [ -z "$why" ]; then
		echo go >&6
		hf_wait FAULTS-ALIVE || why="the guest did not carry on after the disk filled"
		tr -d '\r' <"$T/$n.out" | grep -q '^FAULTS-DISK-ERROR' ||
			why="${why:-the write of the guest to a full disk did not fail: $(tr -d '\r' <"$T/$n.out" | grep FAULTS-DISK)}"
	fi
	if [ -z "$why" ]; then
		hf_api PATCH /vm '{"state": "Paused"}'
		[ "$code" = 204 ] || why="pause: $code $resp"
	fi
	if [ -z "$why" ]; then
		hf_api PUT /snapshot/create "{\"snapshot_path\": \"$T/ro/vm.state\", \"mem_file_path\": \"$T/ro/vm.mem\"}"
		snap="$code $resp"
		[ "$code" = 400 ] || why="a snapshot into a read-only directory: $code $resp (want 400)"
		case "$resp" in *[Rr]ead-only*) ;; *) why="${why:-the snapshot error does not say why: $resp}" ;; esac
		[ -z "$(ls "$T/ro")" ] || why="${why:-the read-only directory is not empty}"
		hf_api PATCH /vm '{"state": "Resumed"}'
		[ "$code" = 204 ] || why="${why:-resume after the failed snapshot: $code $resp}"
	fi
	[ -z "$why" ] && echo finish >&6
	[ -z "$why" ] && { hf_wait FAULTS-DONE || why="the guest did not finish after the resume"; }
	exec 6>&-
	i=0
	while kill -0 $vp 2>/dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
	kill -9 $vp 2>/dev/null
	wait $vp
	rc=$?
	[ -n "$why" ] || [ "$rc" = 0 ] || why="visor exited $rc, want 0 (the guest powered off)"
	grep -q 'virtio-blk: .*No space left on device' "$T/$n.err" ||
		why="${why:-no log line naming the ENOSPC of the disk}"
	grep -q 'virtio-net: .*link down' "$T/$n.err" || why="${why:-no log line saying the link of the tap went down}"
	umount "$T/small" "$T/ro" 2>/dev/null
	if [ -n "$why" ]; then
		bad $n "$why"
		show $n
	else
		ok $n "disk full: the guest saw EIO and carried on; tap deleted: $(grep -o 'virtio-net: .*link down' "$T/$n.err" | head -n 1); snapshot to a read-only directory: $snap; powered off normally"
	fi
}
host_faults_test

# --- bad inputs: one "visor: error:" line, exit 1, no crash ---------------------
# reject NAME VISOR-ARGS...   (NAME=name/word: the message must mention word)
reject() {
	_n="bad-${1%%/*}" _w=""
	case "$1" in */*) _w=${1#*/} ;; esac
	shift
	run "$_n" 120 "$@"
	_e=$(grep -c '^visor: error: ' "$T/$_n.err")
	if [ "$rc" != 1 ]; then
		bad "$_n" "exit status $rc, expected 1"
		show "$_n"
	elif [ "$_e" != 1 ]; then
		bad "$_n" "$_e 'visor: error:' lines on stderr, expected 1"
		show "$_n"
	elif [ -n "$_w" ] && ! grep '^visor: error: ' "$T/$_n.err" | grep -qi -- "$_w"; then
		bad "$_n" "the error does not mention '$_w'"
		show "$_n"
	else
		ok "$_n" "$(grep '^visor: error: ' "$T/$_n.err")"
	fi
}
PO="$BASE visor.action=poweroff" # should anything boot by mistake, it ends

reject missing-kernel run --kernel "$T/no-such-kernel" --initrd "$INITRD" --cmdline "$PO"
# Root reads through chmod 000, so a directory stands in for an unreadable file.
reject unreadable-kernel run --kernel "$T" --initrd "$INITRD" --cmdline "$PO"
if [ "$(id -u)" != 0 ]; then
	cp "$BZ" "$T/noread" && chmod 000 "$T/noread"
	reject unreadable-kernel-mode run --kernel "$T/noread" --initrd "$INITRD" --cmdline "$PO"
fi
dd if=/dev/urandom of="$T/garbage" bs=4096 count=256 2>/dev/null
reject garbage-kernel run --kernel "$T/garbage" --initrd "$INITRD" --cmdline "$PO"
dd if="$BZ" of="$T/trunc" bs=4096 count=1 2>/dev/null
reject truncated-bzimage run --kernel "$T/trunc" --initrd "$INITRD" --cmdline "$PO"
reject empty-kernel run --kernel /dev/null --initrd "$INITRD" --cmdline "$PO"
reject missing-initrd/initrd run --kernel "$BZ" --initrd "$T/no-such-initrd" --cmdline "$PO"
# (128M: with less, this kernel alone does not fit and the error is about that)
dd if=/dev/zero of="$T/big" bs=1048576 count=160 2>/dev/null
reject initrd-too-big/initrd run --kernel "$BZ" --initrd "$T/big" --memory 128M --cmdline "$PO"
rm -f "$T/big"
reject memory-0/memory run --kernel "$BZ" --initrd "$INITRD" --memory 0 --cmdline "$PO"
reject memory-100T/memory run --kernel "$BZ" --initrd "$INITRD" --memory 100T --cmdline "$PO"
reject memory-junk/memory run --kernel "$BZ" --initrd "$INITRD" --memory 12abc --cmdline "$PO"
reject cpus-0/cpus run --kernel "$BZ" --initrd "$INITRD" --cpus 0 --cmdline "$PO"
reject cpus-1000/cpus run --kernel "$BZ" --initrd "$INITRD" --cpus 1000 --cmdline "$PO"
long=$(head -c 10000 /dev/zero | tr '\0' a)
reject "cmdline-too-long/command line" run --kernel "$BZ" --initrd "$INITRD" --cmdline "$PO $long"
reject unknown-option run --kernel "$BZ" --initrd "$INITRD" --no-such-option --cmdline "$PO"
reject no-kernel run --initrd "$INITRD" --cmdline "$PO"

finish
