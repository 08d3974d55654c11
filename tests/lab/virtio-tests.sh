#!/bin/sh
# Linux-guest tests of visor's virtio devices with the stock Debian kernel:
# virtio-blk and virtio-rng over PCI and over MMIO.  Runs inside the lab's L1
# (busybox sh) or directly on a host with VT-x/AMD-V.
#
#   tests/lab/virtio-tests.sh DIR        (DIR as for guest-tests.sh)
#   RESTORED=1 tests/lab/virtio-tests.sh DIR
#                                        every test on a VM restored from a
#                                        snapshot taken after the guest's
#                                        drivers set up its devices
#                                        (tests/lab/restored-run)
#
# Ends with "lab: N passed, N failed".
set -u

. "$(dirname "$0")/lib.sh"

# line NAME REGEX: the first console line matching REGEX (CRs removed)
line() { tr -d '\r' <"$T/$1.out" | grep -m1 -E "$2"; }
sha() { sha256sum | cut -d' ' -f1; }
# pattern SERIAL: what blk.sh writes into MiB 1 of an "rw" disk
pattern_sum() { yes "$1" | head -c 1048576 | sha; }

# blk_case NAME TRANSPORT: three disks (rw 8 MiB, ro 4 MiB, rw 2 MiB) on
# TRANSPORT; checks sizes, serials, read-only flag, data host->guest (the
# guest's checksum of MiB 0) and guest->host (MiB 1 after power-off), and
# that nothing reached the read-only image.
blk_case() {
	n=$1 t=$2
	a="$T/$n-a.img" b="$T/$n-b.img" c="$T/$n-c.img"
	dd if=/dev/urandom of="$a" bs=1048576 count=8 2>/dev/null
	dd if=/dev/urandom of="$b" bs=1048576 count=4 2>/dev/null
	dd if=/dev/urandom of="$c" bs=1048576 count=2 2>/dev/null
	a0=$(head -c 1048576 "$a" | sha)
	c0=$(head -c 1048576 "$c" | sha)
	bsum=$(sha <"$b")
	run "$n" "$TMO" run --kernel "$BZ" --initrd "$INITRD" --memory 256M \
		--disk "$a,id=rw_a,transport=$t" --disk "$b,id=ro_b,readonly,transport=$t" \
		--disk "$c,id=rw_c,transport=$t" --cmdline "$BASE visor.test=blk"
	expect_boot "$n" 0 && expect_result "$n" blk || return
	why=""
	[ "$(value "$n" DISKS)" = 3 ] || why="guest sees $(value "$n" DISKS) disks, expected 3"
	for want in "size=16384 serial=rw_a ro=0" "size=8192 serial=ro_b ro=1" "size=4096 serial=rw_c ro=0"; do
		[ -n "$why" ] || line "$n" "^DISK=vd[a-z] $want\$" >/dev/null || why="no disk with $want"
	done
	[ -n "$why" ] || [ "$(line "$n" '^READSUM rw_a ' | cut -d' ' -f3)" = "$a0" ] || why="guest read different data from rw_a"
	[ -n "$why" ] || [ "$(line "$n" '^READSUM rw_c ' | cut -d' ' -f3)" = "$c0" ] || why="guest read different data from rw_c"
	[ -n "$why" ] || line "$n" '^RO-WRITE-REFUSED ro_b' >/dev/null || why="write to the read-only disk was not refused"
	[ -n "$why" ] || [ "$(dd if="$a" bs=1048576 skip=1 count=1 2>/dev/null | sha)" = "$(pattern_sum rw_a)" ] ||
		why="guest's write to rw_a is not in the image file"
	[ -n "$why" ] || [ "$(dd if="$c" bs=1048576 skip=1 count=1 2>/dev/null | sha)" = "$(pattern_sum rw_c)" ] ||
		why="guest's write to rw_c is not in the image file"
	[ -n "$why" ] || [ "$(head -c 1048576 "$a" | sha)" = "$a0" ] || why="MiB 0 of rw_a changed"
	[ -n "$why" ] || line "$n" '^DISCARDED rw_a' >/dev/null || why="discard of rw_a failed in the guest"
	[ -n "$why" ] || [ "$(dd if="$a" bs=1048576 skip=2 count=1 2>/dev/null | sha)" = "$(head -c 1048576 /dev/zero | sha)" ] ||
		why="discarded range of rw_a is not zero in the image"
	[ -n "$why" ] || [ "$(sha <"$b")" = "$bsum" ] || why="the read-only image changed"
	if [ -n "$why" ]; then
		bad "$n" "$why"
		show "$n"
	else
		ok "$n" "3 disks, data both ways, discard punched, read-only enforced"
	fi
	rm -f "$a" "$b" "$c"
}

blk_case blk-pci pci
blk_case blk-mmio mmio

# Mixed transports, and the guest's fsync reaches the file while the VM
# still runs (the guest prints WROTE only after fsync returned; visor is
# killed right after, without a clean shutdown).
n=blk-flush-mixed
a="$T/f-a.img" c="$T/f-c.img"
dd if=/dev/zero of="$a" bs=1048576 count=4 2>/dev/null
dd if=/dev/zero of="$c" bs=1048576 count=4 2>/dev/null
: >"$T/$n.out"
: >"$T/$n.err"
TMPDIR=$T $VMRUN run --kernel "$BZ" --initrd "$INITRD" --memory 256M \
	--disk "$a,id=rw_fa" --disk "$c,id=rw_fc,transport=mmio" \
	--cmdline "$BASE visor.test=blk visor.hold=1" </dev/null >>"$T/$n.out" 2>>"$T/$n.err" &
vpid=$!
i=0
while [ $i -lt "$TMO" ] && ! tr -d '\r' <"$T/$n.out" | grep -q '^WROTE rw_fc'; do
	sleep 1
	i=$((i + 1))
done
kill -9 $vpid 2>/dev/null
wait $vpid 2>/dev/null
if ! tr -d '\r' <"$T/$n.out" | grep -q '^WROTE rw_fc'; then
	bad "$n" "guest never reported its writes"
	show "$n"
elif [ "$(dd if="$a" bs=1048576 skip=1 count=1 2>/dev/null | sha)" != "$(pattern_sum rw_fa)" ] ||
	[ "$(dd if="$c" bs=1048576 skip=1 count=1 2>/dev/null | sha)" != "$(pattern_sum rw_fc)" ]; then
	bad "$n" "fsync'ed data missing from the image after kill -9"
	show "$n"
else
	ok "$n" "PCI + MMIO disks; fsync'ed data in the files after kill -9"
fi
rm -f "$a" "$c"

# virtio-rng bound as the kernel's hwrng and producing data, on both transports
for t in pci mmio; do
	n=rng-$t
	run "$n" "$TMO" run --kernel "$BZ" --initrd "$INITRD" --memory 256M --rng "transport=$t" \
		--cmdline "$BASE visor.test=rng"
	expect_boot "$n" 0 && expect_result "$n" rng || continue
	ok "$n" "$(line "$n" '^RNG_CURRENT=') $(line "$n" '^RNG_BYTES=')"
done

# virtio-balloon through the API (`visor balloon`, `visor status`): inflating by 100 MiB lowers
# visor's RSS by about that much and the guest's MemTotal by 100 MiB;
# deflating gives it back; the guest's statistics arrive.
UDS="$DIR/lab-tools/uds-tool"
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
API="$T/api.sock"
vctl() { "$VISOR" "$@" 2>&1; }
# wait_for NAME REGEX SECS: wait for a console line
wait_for() {
	_i=0
	while [ $_i -lt "$3" ]; do
		tr -d '\r' <"$T/$1.out" | grep -q -E "$2" && return 0
		sleep 1
		_i=$((_i + 1))
	done
	return 1
}
# wait_actual MIB SECS: wait until the driver reports that balloon size
wait_actual() {
	_i=0
	while [ $_i -lt "$2" ]; do
		vctl status "$API" | grep -q "actual $1 MiB" && return 0
		sleep 1
		_i=$((_i + 1))
	done
	return 1
}
last_memtotal() { tr -d '\r' <"$T/$1.out" | sed -n 's/^MEMTOTAL=\([0-9]*\)$/\1/p' | tail -n 1; }
n=balloon
if true; then
	: >"$T/$n.out"
	: >"$T/$n.err"
	TMPDIR=$T $VMRUN run --kernel "$BZ" --initrd "$INITRD" --memory 256M \
		--balloon reporting=off,stats_period=1 --api-sock "$API" \
		--cmdline "$BASE visor.test=balloon visor.hold=1" </dev/null >>"$T/$n.out" 2>>"$T/$n.err" &
	vpid=$!
	why=""
	wait_for "$n" '^MEMTOTAL=' "$TMO" || why="guest never reported MemTotal"
	[ -n "$why" ] || { sleep 2; m0=$(last_memtotal "$n"); r0=$(rss_kb $vpid); }
	[ -n "$why" ] || vctl balloon "$API" 100M | grep -q 'balloon target 100 MiB' || why="visor balloon 100M refused: $(vctl balloon "$API" 100M)"
	[ -n "$why" ] || wait_actual 100 120 || why="guest did not inflate to 100 MiB: $(vctl status "$API")"
	[ -n "$why" ] || { sleep 3; r1=$(rss_kb $vpid); m1=$(last_memtotal "$n"); }
	[ -n "$why" ] || [ $((r0 - r1)) -ge 81920 ] || why="RSS fell by only $((r0 - r1)) kB (from $r0 kB) after inflating 100 MiB"
	[ -n "$why" ] || [ $((m0 - m1)) -ge 92160 ] || why="guest MemTotal fell by only $((m0 - m1)) kB"
	stats=$(vctl status "$API")
	[ -n "$why" ] || echo "$stats" | grep -q 'guest free [0-9]' || why="no guest statistics: $stats"
	[ -n "$why" ] || vctl balloon "$API" 0 >/dev/null || why="visor balloon 0 refused: $(vctl balloon "$API" 0)"
	[ -n "$why" ] || wait_actual 0 120 || why="guest did not deflate: $(vctl status "$API")"
	[ -n "$why" ] || { sleep 3; m2=$(last_memtotal "$n"); }
	[ -n "$why" ] || [ "$m2" -ge $((m0 - 4096)) ] || why="MemTotal did not come back after deflating ($m2 kB vs $m0 kB)"
	[ -n "$why" ] || ! vctl balloon "$API" 1T >/dev/null || why="an oversized target was accepted"
	kill -9 $vpid 2>/dev/null
	wait $vpid 2>/dev/null
	if [ -n "$why" ]; then
		bad "$n" "$why"
		show "$n"
	else
		ok "$n" "RSS -$(((r0 - r1) / 1024)) MiB, MemTotal -$(((m0 - m1) / 1024)) MiB for a 100 MiB balloon; deflated; $(echo "$stats" | grep -o 'guest free [0-9]* of [0-9]* MiB')"
	fi
fi

# virtio-net on a tap: ping, then 4 MiB of TCP each way, byte-identical
# (link-local addresses; the tap exists only inside this machine)
TCP="$DIR/lab-tools/tcp-tool"
# A tap visor creates goes away with the process.  Restored, the booted VM
# is killed and the restored one reopens the tap by name: the taps are
# made persistent first (as orchestrators do), so the host's address on
# them survives the switch.
taps() { # taps add|del NAME...
	[ -n "$PFX" ] || return 0
	_op=$1
	shift
	for _t in "$@"; do
		if [ "$_op" = add ]; then tunctl -t "$_t" >/dev/null; else tunctl -d "$_t" >/dev/null; fi
	done
}
n=net
if [ ! -x "$TCP" ] || [ ! -c /dev/net/tun ]; then
	bad "$n" "needs $TCP and /dev/net/tun"
else
	: >"$T/$n.out"
	: >"$T/$n.err"
	taps add vtap0
	TMPDIR=$T $VMRUN run --kernel "$BZ" --initrd "$INITRD" --memory 256M --net tap=vtap0,mac=52:54:00:12:34:56 \
		--cmdline "$BASE visor.test=net" </dev/null >>"$T/$n.out" 2>>"$T/$n.err" &
	vpid=$!
	why=""
	i=0
	while [ $i -lt 60 ] && [ ! -e /sys/class/net/vtap0 ]; do sleep 1; i=$((i + 1)); done
	if [ -e /sys/class/net/vtap0 ]; then
		ip addr add 169.254.10.1/24 dev vtap0
		ip link set vtap0 up
	else
		why="tap vtap0 never appeared"
	fi
	"$TCP" sink 5001 >"$T/g2h" 2>&1 &
	spid=$!
	[ -n "$why" ] || wait_for "$n" '^LISTENING 5002' "$TMO" || why="guest never got to receiving (ping or send failed)"
	[ -n "$why" ] || "$TCP" send 169.254.10.2 5002 4194304 >"$T/h2g" 2>&1 || why="sending to the guest failed: $(cat "$T/h2g")"
	[ -n "$why" ] || wait_for "$n" '^VISOR-TEST-RESULT: net' "$TMO" || why="guest test did not finish"
	wait $vpid
	rc=$?
	kill $spid 2>/dev/null
	gsent=$(line "$n" '^SENT ' | sed 's/^SENT \([0-9]*\) sum=\(.*\)$/\1 \2/')
	hsink=$(sed -n 's/^SINK bytes=\([0-9]*\) sum=\(.*\)$/\1 \2/p' "$T/g2h")
	hsent=$(sed -n 's/^SENT \([0-9]*\) sum=\(.*\)$/\1 \2/p' "$T/h2g")
	gsink=$(line "$n" '^SINK ' | sed 's/^SINK bytes=\([0-9]*\) sum=\(.*\)$/\1 \2/')
	[ -n "$why" ] || line "$n" '^MAC=52:54:00:12:34:56$' >/dev/null || why="guest MAC is not the configured one"
	[ -n "$why" ] || line "$n" '^PING-OK' >/dev/null || why="ping failed"
	[ -n "$why" ] || [ -n "$gsent" ] && [ "$gsent" = "$hsink" ] || why="${why:-guest->host TCP differs: sent '$gsent', received '$hsink'}"
	[ -n "$why" ] || [ -n "$hsent" ] && [ "$hsent" = "$gsink" ] || why="${why:-host->guest TCP differs: sent '$hsent', received '$gsink'}"
	[ -n "$why" ] || [ "$rc" = 0 ] || why="visor exited with $rc"
	taps del vtap0
	if [ -n "$why" ]; then
		bad "$n" "$why"
		show "$n"
	else
		ok "$n" "ping, 4 MiB TCP each way identical ($gsent / $hsent)"
	fi
fi

# two NICs at once, one over PCI and one over MMIO
n=net-two-nics
if [ -c /dev/net/tun ]; then
	: >"$T/$n.out"
	: >"$T/$n.err"
	taps add vtap0 vtap1
	TMPDIR=$T $VMRUN run --kernel "$BZ" --initrd "$INITRD" --memory 256M --net tap=vtap0 \
		--net tap=vtap1,transport=mmio --cmdline "$BASE visor.test=net2" </dev/null \
		>>"$T/$n.out" 2>>"$T/$n.err" &
	vpid=$!
	for i in 0 1; do
		j=0
		while [ $j -lt 60 ] && [ ! -e /sys/class/net/vtap$i ]; do sleep 1; j=$((j + 1)); done
		ip addr add 169.254.1$i.1/24 dev vtap$i 2>/dev/null
		ip link set vtap$i up 2>/dev/null
	done
	wait $vpid
	rc=$?
	taps del vtap0 vtap1
	if [ "$rc" = 0 ] && line "$n" '^PING-OK eth0' >/dev/null && line "$n" '^PING-OK eth1' >/dev/null; then
		ok "$n" "ping over both"
	else
		bad "$n" "exit status $rc, or no ping over both NICs"
		show "$n"
	fi
else
	bad "$n" "needs /dev/net/tun"
fi

# After a restore the NICs announce themselves (issue 11; restored suite
# only: it is about restores).  A VM with two NICs (PCI and MMIO) whose
# addresses are set (guest test net2, then held) is snapshotted, killed
# and restored: at its first resume visor sets VIRTIO_NET_S_ANNOUNCE, and
# the guest's driver sends a gratuitous ARP for each address (and acks on
# the control queue), which must reach each tap (lab-tools/garp-watch on
# the tap, started before the restore; no such ARP is sent otherwise).
GW="$DIR/lab-tools/garp-watch"
n=net-announce
if [ -z "$PFX" ]; then
	:
elif [ ! -x "$GW" ] || [ ! -c /dev/net/tun ]; then
	bad "$n" "needs $GW and /dev/net/tun"
else
	: >"$T/$n.out"
	: >"$T/$n.err"
	AAPI="$T/announce.sock"
	for i in 0 1; do
		tunctl -t atap$i >/dev/null
		ip addr add 169.254.1$i.1/24 dev atap$i
		ip link set atap$i up
	done
	TMPDIR=$T $VMRUN run --kernel "$BZ" --initrd "$INITRD" --memory 256M --api-sock "$AAPI" \
		--net tap=atap0,mac=52:54:00:12:34:60 --net tap=atap1,mac=52:54:00:12:34:61,transport=mmio \
		--cmdline "$BASE visor.test=net2 visor.hold=1" </dev/null >>"$T/$n.out" 2>>"$T/$n.err" &
	vpid=$!
	why=""
	wait_for "$n" '^VISOR-TEST-RESULT: net2 PASS' "$TMO" || why="the guest's NICs did not come up (net2)"
	[ -n "$why" ] || "$VISOR" snapshot "$AAPI" "$T/asnap" >"$T/asnap.out" 2>&1 ||
		why="visor snapshot failed: $(cat "$T/asnap.out")"
	kill -9 $vpid 2>/dev/null
	wait $vpid 2>/dev/null
	if [ -z "$why" ]; then
		"$GW" atap0 52:54:00:12:34:60 169.254.10.2 1 "$TMO" >"$T/garp0" 2>&1 &
		w0=$!
		"$GW" atap1 52:54:00:12:34:61 169.254.11.2 1 "$TMO" >"$T/garp1" 2>&1 &
		w1=$!
		i=0
		while [ $i -lt 30 ] && ! { grep -q '^WATCHING' "$T/garp0" && grep -q '^WATCHING' "$T/garp1"; }; do
			sleep 1
			i=$((i + 1))
		done
		"$VISOR" restore "$T/asnap" --no-api </dev/null >>"$T/$n.out" 2>>"$T/$n.err" &
		rpid=$!
		wait $w0
		r0=$?
		wait $w1
		r1=$?
		kill -9 $rpid 2>/dev/null
		wait $rpid 2>/dev/null
		[ "$r0" = 0 ] || why="no gratuitous ARP for 169.254.10.2 on atap0 (PCI): $(tr '\n' ' ' <"$T/garp0")"
		[ -n "$why" ] || [ "$r1" = 0 ] ||
			why="no gratuitous ARP for 169.254.11.2 on atap1 (MMIO): $(tr '\n' ' ' <"$T/garp1")"
	fi
	for i in 0 1; do tunctl -d atap$i >/dev/null; done
	if [ -n "$why" ]; then
		bad "$n" "$why"
		show "$n"
	else
		ok "$n" "gratuitous ARPs on both taps after the restore ($(tail -n 1 "$T/garp0"); $(tail -n 1 "$T/garp1"))"
	fi
	rm -rf "$T/asnap"
fi

# virtio-vsock, Firecracker's Unix-socket convention: two concurrent
# host-initiated connections echoed by the guest (4 MiB each), a
# guest-initiated connection reading 4 MiB from the host, and a host peer
# that vanishes mid-stream
n=vsock
V="$T/v.sock"
"$UDS" serve "${V}_6000" 4194304 >"$T/serve6000" 2>&1 &
p1=$!
"$UDS" drop "${V}_6001" 1048576 >"$T/drop6001" 2>&1 &
p2=$!
: >"$T/$n.out"
: >"$T/$n.err"
TMPDIR=$T $VMRUN run --kernel "$BZ" --initrd "$INITRD" --memory 256M --vsock "cid=3,uds=$V" \
	--cmdline "$BASE visor.test=vsock" </dev/null >>"$T/$n.out" 2>>"$T/$n.err" &
vpid=$!
why=""
wait_for "$n" '^LISTENING 5000' "$TMO" || why="guest never listened on port 5000"
if [ -z "$why" ]; then
	"$UDS" connect "$V" 5000 4194304 >"$T/c1" 2>&1 &
	c1=$!
	"$UDS" connect "$V" 5000 4194304 >"$T/c2" 2>&1
	wait $c1
	grep -q '^ECHO-OK 4194304' "$T/c1" && grep -q '^ECHO-OK 4194304' "$T/c2" ||
		why="host-initiated echo failed: $(cat "$T/c1" "$T/c2" | tr '\n' ' ')"
fi
[ -n "$why" ] || wait_for "$n" '^VISOR-TEST-RESULT: vsock' "$TMO" || why="guest test did not finish"
wait $vpid
rc=$?
kill $p1 $p2 2>/dev/null
served=$(sed -n 's/^SERVED 4194304 sum=//p' "$T/serve6000")
[ -n "$why" ] || [ -n "$served" ] && line "$n" "^SINK bytes=4194304 sum=$served\$" >/dev/null ||
	why="${why:-guest-initiated 4 MiB differs (host sent sum $served)}"
[ -n "$why" ] || line "$n" '^SINK bytes=[0-9]* ' | tail -n 1 >/dev/null || why="no result from the vanished peer"
[ -n "$why" ] || [ "$(tr -d '\r' <"$T/$n.out" | grep -c '^SINK bytes=')" = 2 ] || why="the read from the vanishing peer did not end"
[ -n "$why" ] || expect_result "$n" vsock || why="guest test failed"
[ -n "$why" ] || [ "$rc" = 0 ] || why="visor exited with $rc"
if [ -n "$why" ]; then
	bad "$n" "$why"
	show "$n"
else
	ok "$n" "2x4 MiB echoed, 4 MiB guest-initiated identical, vanished peer ended the stream"
fi

# bad disk options: one clear error line, exit 1, before any KVM work
reject_disk() {
	n=$1
	shift
	run "$n" 30 run --kernel "$BZ" --initrd "$INITRD" --memory 256M "$@"
	e=$(grep -c '^visor: error:' "$T/$n.err")
	# the message names the drive: the option (syntax) or the drive's id
	# (the same words the API uses for the same mistake)
	if [ "$rc" != 1 ] || [ "$e" != 1 ] || ! grep -q -e '--disk' -e "drive 'disk0'" "$T/$n.err"; then
		bad "$n" "exit $rc with $e error lines"
		show "$n"
	else
		ok "$n" "$(grep '^visor: error:' "$T/$n.err" | head -c 100)"
	fi
}
reject_disk disk-missing --disk "$T/nope.img"
reject_disk disk-directory --disk "$T"
reject_disk disk-bad-option --disk "$T/x.img,sparkly"
finish
