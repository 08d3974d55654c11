#!/bin/sh
# Guest test: two NICs at once (the host gives them different subnets):
# eth0 169.254.10.2 -> host 169.254.10.1, eth1 169.254.11.2 -> host 169.254.11.1.
ip link set lo up
n=0
for i in 0 1; do
	ip link set eth$i up || exit 1
	ip addr add 169.254.1$i.2/24 dev eth$i
done
for i in 0 1; do
	j=0
	until ping -c 1 -W 1 169.254.1$i.1 >/dev/null 2>&1; do
		j=$((j + 1))
		[ $j -gt 90 ] && break
	done
	if ping -c 2 -W 2 169.254.1$i.1 >/dev/null; then
		echo "PING-OK eth$i"
		n=$((n + 1))
	fi
done
[ "$n" = 2 ]
