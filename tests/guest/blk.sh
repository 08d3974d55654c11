#!/bin/sh
# Guest test: virtio disks.  Reports each disk, then acts on the ones whose
# serial (set by the host with --disk ...,id=SERIAL) starts with:
#   rw   read MiB 0 and print its sha256; write MiB 1 with a pattern (the
#        serial repeated) and fsync; print "WROTE serial"; on disks of
#        3 MiB or more, discard MiB 2 and print "DISCARDED serial"
#   ro   try to write; print RO-WRITE-REFUSED (expected) or RO-WRITE-ACCEPTED
# The host checks the image files after the guest powers off.
set -u
found=0
for d in /sys/block/vd*; do
	[ -e "$d" ] || continue
	found=$((found + 1))
	n=${d##*/}
	echo "DISK=$n size=$(cat "$d/size") serial=$(cat "$d/serial" 2>/dev/null) ro=$(cat "$d/ro")"
done
echo "DISKS=$found"
for d in /sys/block/vd*; do
	[ -e "$d" ] || continue
	n=${d##*/}
	s=$(cat "$d/serial" 2>/dev/null)
	case "$s" in
	rw*)
		sum=$(dd if=/dev/$n bs=1048576 count=1 2>/dev/null | sha256sum | cut -d' ' -f1)
		echo "READSUM $s $sum"
		# (from a file: dd reading a pipe would write short blocks)
		yes "$s" | head -c 1048576 >/tmp/pattern
		if dd if=/tmp/pattern of=/dev/$n bs=1048576 seek=1 count=1 conv=fsync 2>/dev/null; then
			sync
			echo "WROTE $s"
		else
			echo "WRITE-FAILED $s"
		fi
		# disks of 3 MiB or more: discard MiB 2 (visor punches a hole)
		if [ "$(cat /sys/block/$n/size)" -ge 6144 ] &&
			blkdiscard -o 2097152 -l 1048576 /dev/$n 2>/dev/null; then
			echo "DISCARDED $s"
		fi
		;;
	ro*)
		if printf x | dd of=/dev/$n bs=1 count=1 conv=fsync 2>/dev/null; then
			echo "RO-WRITE-ACCEPTED $s"
		else
			echo "RO-WRITE-REFUSED $s"
		fi
		;;
	esac
done
[ "$found" -gt 0 ]
