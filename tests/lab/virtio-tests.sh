#!/bin/sh
# Linux-guest tests of visor's virtio devices with the stock Debian kernel:
# virtio-blk and virtio-rng over PCI and over MMIO.  Runs inside the lab's L1
# (busybox sh) or directly on a host with VT-x/AMD-V.
#
#   tests/lab/virtio-tests.sh DIR        (DIR as for guest-tests.sh)
#
# Ends with "lab: N passed, N failed".
set -u

DIR=${1:-.}
VISOR="$DIR/visor"
G="$DIR/guest"
[ -f "$G/vmlinuz" ] || G="$DIR"
BZ="$G/vmlinuz"
ELF="$G/vmlinux"
INITRD="$G/initrd.cpio.gz"
TMO=${GUEST_TESTS_TIMEOUT:-300}
BASE="console=ttyS0 reboot=k panic=1 quiet"
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
		--disk "$a,id=rw-a,transport=$t" --disk "$b,id=ro-b,readonly,transport=$t" \
		--disk "$c,id=rw-c,transport=$t" --cmdline "$BASE visor.test=blk"
	expect_boot "$n" 0 && expect_result "$n" blk || return
	why=""
	[ "$(value "$n" DISKS)" = 3 ] || why="guest sees $(value "$n" DISKS) disks, expected 3"
	for want in "size=16384 serial=rw-a ro=0" "size=8192 serial=ro-b ro=1" "size=4096 serial=rw-c ro=0"; do
		[ -n "$why" ] || line "$n" "^DISK=vd[a-z] $want\$" >/dev/null || why="no disk with $want"
	done
	[ -n "$why" ] || [ "$(line "$n" '^READSUM rw-a ' | cut -d' ' -f3)" = "$a0" ] || why="guest read different data from rw-a"
	[ -n "$why" ] || [ "$(line "$n" '^READSUM rw-c ' | cut -d' ' -f3)" = "$c0" ] || why="guest read different data from rw-c"
	[ -n "$why" ] || line "$n" '^RO-WRITE-REFUSED ro-b' >/dev/null || why="write to the read-only disk was not refused"
	[ -n "$why" ] || [ "$(dd if="$a" bs=1048576 skip=1 count=1 2>/dev/null | sha)" = "$(pattern_sum rw-a)" ] ||
		why="guest's write to rw-a is not in the image file"
	[ -n "$why" ] || [ "$(dd if="$c" bs=1048576 skip=1 count=1 2>/dev/null | sha)" = "$(pattern_sum rw-c)" ] ||
		why="guest's write to rw-c is not in the image file"
	[ -n "$why" ] || [ "$(head -c 1048576 "$a" | sha)" = "$a0" ] || why="MiB 0 of rw-a changed"
	[ -n "$why" ] || line "$n" '^DISCARDED rw-a' >/dev/null || why="discard of rw-a failed in the guest"
	[ -n "$why" ] || [ "$(dd if="$a" bs=1048576 skip=2 count=1 2>/dev/null | sha)" = "$(head -c 1048576 /dev/zero | sha)" ] ||
		why="discarded range of rw-a is not zero in the image"
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
"$VISOR" run --kernel "$BZ" --initrd "$INITRD" --memory 256M \
	--disk "$a,id=rw-fa" --disk "$c,id=rw-fc,transport=mmio" \
	--cmdline "$BASE visor.test=blk visor.hold=1" </dev/null >>"$T/$n.out" 2>>"$T/$n.err" &
vpid=$!
i=0
while [ $i -lt "$TMO" ] && ! tr -d '\r' <"$T/$n.out" | grep -q '^WROTE rw-fc'; do
	sleep 1
	i=$((i + 1))
done
kill -9 $vpid 2>/dev/null
wait $vpid 2>/dev/null
if ! tr -d '\r' <"$T/$n.out" | grep -q '^WROTE rw-fc'; then
	bad "$n" "guest never reported its writes"
	show "$n"
elif [ "$(dd if="$a" bs=1048576 skip=1 count=1 2>/dev/null | sha)" != "$(pattern_sum rw-fa)" ] ||
	[ "$(dd if="$c" bs=1048576 skip=1 count=1 2>/dev/null | sha)" != "$(pattern_sum rw-fc)" ]; then
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

# bad disk options: one clear error line, exit 1, before any KVM work
reject_disk() {
	n=$1
	shift
	run "$n" 30 run --kernel "$BZ" --initrd "$INITRD" --memory 256M "$@"
	e=$(grep -c '^visor: error:' "$T/$n.err")
	if [ "$rc" != 1 ] || [ "$e" != 1 ] || ! grep -q -- '--disk' "$T/$n.err"; then
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
