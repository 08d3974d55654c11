#!/bin/sh
# Guest test: the virtio-rng device is the kernel's current hwrng and
# produces data on /dev/hwrng.
cur=$(cat /sys/devices/virtual/misc/hw_random/rng_current 2>/dev/null)
echo "RNG_CURRENT=$cur"
n=$(dd if=/dev/hwrng bs=64 count=4 2>/dev/null | wc -c)
echo "RNG_BYTES=$n"
distinct=$(dd if=/dev/hwrng bs=256 count=1 2>/dev/null | od -An -tx1 -v | tr -s ' ' '\n' | sort -u | grep -c .)
echo "RNG_DISTINCT=$distinct"
case "$cur" in virtio_rng*) ;; *) exit 1 ;; esac
[ "$n" = 256 ] && [ "$distinct" -gt 100 ]
