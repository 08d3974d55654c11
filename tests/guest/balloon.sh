#!/bin/sh
# Guest test: make (nearly) all free memory resident on the host, free it
# again, then report MemTotal once a second while the host inflates and
# deflates the balloon (visor.hold keeps the guest up afterwards).
free_kb=$(sed -n 's/^MemFree: *\([0-9]*\) kB$/\1/p' /proc/meminfo)
mib=$((free_kb / 1024 - 24))
mkdir -p /mnt/fill
mount -t tmpfs -o size=${mib}m tmpfs /mnt/fill
dd if=/dev/zero of=/mnt/fill/f bs=1048576 count=$mib 2>/dev/null
rm -f /mnt/fill/f
umount /mnt/fill
echo "TOUCHED ${mib}MiB"
i=0
while [ $i -lt 600 ]; do
	echo "MEMTOTAL=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo)"
	sleep 1
	i=$((i + 1))
done
