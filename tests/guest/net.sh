#!/bin/sh
# Guest test: virtio-net.  eth0 gets 169.254.10.2/24 (link-local: the
# traffic stays between the guest and the host's tap); ping the host end
# 169.254.10.1, send it 4 MiB over TCP (port 5001), then receive 4 MiB
# from it (port 5002).  The host compares the byte counts and checksums.
ip link set lo up
ip link set eth0 up || exit 1
ip addr add 169.254.10.2/24 dev eth0
echo "MAC=$(cat /sys/class/net/eth0/address)"
i=0
until ping -c 1 -W 1 169.254.10.1 >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -gt 90 ] && { echo "PING-FAILED"; exit 1; }
done
ping -c 3 -W 2 169.254.10.1 >/dev/null && echo "PING-OK"
tcp-tool send 169.254.10.1 5001 4194304 || exit 1
tcp-tool sink 5002 || exit 1
