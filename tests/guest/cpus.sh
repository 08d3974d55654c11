#!/bin/sh
# Guest test: report the number of online CPUs.
n=$(grep -c '^processor' /proc/cpuinfo)
online=$(cat /sys/devices/system/cpu/online 2>/dev/null)
echo "CPUS=$n"
echo "online: $online"
[ "$n" -ge 1 ]
