# shellcheck shell=sh
# Two "hosts" in one machine, for live migration (issue 11): sourced by
# tests/lab/migrate-tests.sh and bench/migrate, inside the lab's L1
# (busybox: ip, brctl, tunctl, nsenter, unshare; no iproute2) or on any
# Linux host as root.
#
#     peer (10.77.0.10)          the far end a guest talks to and pings
#          | eth0
#          | swP
#     switch: bridge sw0         learns which port a MAC is behind
#      swA |        | swB
#     wire |        | wire       (veth pairs: "the wire" of each host)
#   hostA: br0 10.77.0.1       hostB: br0 10.77.0.2
#          |                          |
#     tap vmtap0                 tap vmtap0   (persistent; a VMM on that host uses it)
#
# Five network namespaces: hostA, hostB, switch, peer (and L1's own, left
# alone).  Each host has a bridge br0 with its address, its end of the
# wire and a persistent tap for a VM (the same name on both hosts, so a
# migrated VM finds its tap by the name it had).  The guest's address is
# the same wherever it runs: it migrates.  A VMM runs on a host with
# `in_host A visor ...`: it and its tap are in that host's namespace, and
# migration traffic between the hosts (tcp:MIG_ADDR_B:PORT) crosses the
# wire and the switch like the guest's own.  Unix sockets (API, QMP) are
# files: every namespace sees them.
#
# A namespace is held by a `sleep` started in it (busybox ip has no
# `netns`): in_host enters it with nsenter -t PID -n.  The bridge and
# veth drivers are modules in Debian's kernel; where the kernel lacks them
# mighosts_up loads them from MIG_MODDIR (tests/lab/mig-stage puts them
# there for the lab).
#
#   MIG_DIR        state (holder pids, logs), default ${TMPDIR:-/tmp}/mighosts
#   MIG_MODDIR     bridge/veth modules (*.ko, in load order from modules.order)
#   MIG_ADDR_A, MIG_ADDR_B, MIG_PEER, MIG_GUEST   10.77.0.1, .2, .10, .100 (/24)
#   MIG_GUEST_MAC  52:54:00:4d:49:47    MIG_TAP  vmtap0
#
#   mighosts_up                 build it all (first tearing down a previous one);
#                               0, or 1 with the reason on stderr
#   mighosts_down               kill the holders: the namespaces, and every bridge,
#                               veth and tap in them, go away with the last process
#                               in each (stop the VMMs first)
#   in_host A|B|peer|switch CMD...   run CMD in that namespace (a shell
#                               function: `in_host A cmd &` gives a subshell's pid
#                               in $!)
#   mighosts_nsenter A|B|peer|switch  the command prefix that enters the namespace,
#                               for background jobs: `$(mighosts_nsenter A) cmd &`
#                               gives cmd's own pid in $! (nsenter execs it)
#   mighosts_tap A|B            the VM's tap on that host
#   mighosts_port MAC           the switch port the switch last saw MAC on: A, B,
#                               peer, or none
#   mighosts_check              the wiring works: each host and the peer reach the
#                               others (ping); prints what it found, 0 or 1

MIG_DIR=${MIG_DIR:-${TMPDIR:-/tmp}/mighosts}
MIG_MODDIR=${MIG_MODDIR:-}
MIG_ADDR_A=${MIG_ADDR_A:-10.77.0.1}
MIG_ADDR_B=${MIG_ADDR_B:-10.77.0.2}
MIG_PEER=${MIG_PEER:-10.77.0.10}
MIG_GUEST=${MIG_GUEST:-10.77.0.100}
MIG_PFX=24
MIG_GUEST_MAC=${MIG_GUEST_MAC:-52:54:00:4d:49:47}
MIG_TAP=${MIG_TAP:-vmtap0}

_mig_err() { echo "mighosts: $*" >&2; }

# _mig_pid NS: the holder's pid
_mig_pid() {
	case "$1" in
	A | a | hostA) cat "$MIG_DIR/hostA.pid" 2>/dev/null ;;
	B | b | hostB) cat "$MIG_DIR/hostB.pid" 2>/dev/null ;;
	peer | switch) cat "$MIG_DIR/$1.pid" 2>/dev/null ;;
	esac
}

in_host() {
	_p=$(_mig_pid "$1")
	if [ -z "$_p" ]; then
		_mig_err "no namespace '$1' (mighosts_up first)"
		return 1
	fi
	shift
	nsenter -t "$_p" -n "$@"
}

mighosts_nsenter() {
	_p=$(_mig_pid "$1")
	if [ -z "$_p" ]; then
		_mig_err "no namespace '$1' (mighosts_up first)"
		echo false
		return 1
	fi
	echo "nsenter -t $_p -n"
}

mighosts_tap() { echo "$MIG_TAP"; }

# _mig_modules: load the bridge and veth drivers (insmod from MIG_MODDIR,
# else modprobe; either fails harmlessly when the driver is there already,
# built in or loaded: a missing one shows when the first bridge or veth
# cannot be made)
_mig_modules() {
	if [ -n "$MIG_MODDIR" ] && [ -s "$MIG_MODDIR/modules.order" ]; then
		while read -r _m; do
			insmod "$MIG_MODDIR/$_m" 2>/dev/null
		done <"$MIG_MODDIR/modules.order"
	else
		modprobe bridge 2>/dev/null
		modprobe veth 2>/dev/null
	fi
	return 0
}
_mig_nomod="(no bridge or veth driver? MIG_MODDIR=${MIG_MODDIR:-unset}; tests/lab/mig-stage DIR stages the modules)"

# _mig_ns NAME: a new namespace held by a sleep; its pid in MIG_DIR/NAME.pid
_mig_ns() {
	unshare -n sleep 2147483647 </dev/null >/dev/null 2>&1 &
	_p=$!
	_i=0
	# (until the holder has unshared)
	while [ "$(readlink "/proc/$_p/ns/net" 2>/dev/null)" = "$(readlink /proc/self/ns/net)" ]; do
		_i=$((_i + 1))
		if [ $_i -gt 100 ] || ! kill -0 "$_p" 2>/dev/null; then
			_mig_err "cannot create network namespace $1 (unshare -n)"
			return 1
		fi
		sleep 0.05
	done
	echo "$_p" >"$MIG_DIR/$1.pid"
	in_host "$1" ip link set lo up
}

# _mig_wire FROM_NS FROM_NAME TO_NS TO_NAME: a veth pair between two
# namespaces.  (busybox ip cannot name a veth's peer: the pair is made in
# FROM_NS, where the peer gets the kernel's first free vethN, which moves
# and is renamed at once.)
_mig_wire() {
	in_host "$1" ip link add "$2" type veth || { _mig_err "ip link add $2 type veth in $1 failed $_mig_nomod"; return 1; }
	_peer=$(in_host "$1" ip -o link show 2>/dev/null | sed -n "s/^[0-9]*: \(veth[0-9]*\)@$2:.*/\1/p" | head -n 1)
	[ -n "$_peer" ] || { _mig_err "no peer of $2 in $1: $(in_host "$1" ip -o link show | tr '\n' ' ')"; return 1; }
	in_host "$1" ip link set "$_peer" netns "$(_mig_pid "$3")" || return 1
	in_host "$3" ip link set "$_peer" name "$4" || return 1
	in_host "$1" ip link set "$2" up && in_host "$3" ip link set "$4" up
}

mighosts_up() {
	mighosts_down
	mkdir -p "$MIG_DIR" || return 1
	_mig_modules || return 1
	[ -c /dev/net/tun ] || { _mig_err "no /dev/net/tun"; return 1; }
	for _n in hostA hostB switch peer; do
		_mig_ns "$_n" || { mighosts_down; return 1; }
	done
	# the switch
	{ in_host switch brctl addbr sw0 && in_host switch ip link set sw0 up; } ||
		{ _mig_err "cannot create the switch's bridge $_mig_nomod"; mighosts_down; return 1; }
	for _h in A B; do
		_mig_wire switch "sw$_h" "host$_h" wire || { mighosts_down; return 1; }
		in_host switch brctl addif sw0 "sw$_h" || { mighosts_down; return 1; }
		if [ $_h = A ]; then _a=$MIG_ADDR_A; else _a=$MIG_ADDR_B; fi
		# the host: a bridge with its address, the wire and the VM's tap
		if ! { in_host "$_h" brctl addbr br0 &&
			in_host "$_h" brctl addif br0 wire &&
			in_host "$_h" ip addr add "$_a/$MIG_PFX" dev br0 &&
			in_host "$_h" ip link set br0 up &&
			in_host "$_h" tunctl -t "$MIG_TAP" >/dev/null &&
			in_host "$_h" brctl addif br0 "$MIG_TAP" &&
			in_host "$_h" ip link set "$MIG_TAP" up; }; then
			_mig_err "cannot set up host$_h"
			mighosts_down
			return 1
		fi
	done
	_mig_wire switch swP peer eth0 && in_host switch brctl addif sw0 swP &&
		in_host peer ip addr add "$MIG_PEER/$MIG_PFX" dev eth0 ||
		{ _mig_err "cannot set up the peer"; mighosts_down; return 1; }
	return 0
}

mighosts_down() {
	for _n in hostA hostB switch peer; do
		_p=$(cat "$MIG_DIR/$_n.pid" 2>/dev/null) || continue
		# (only our holder: a sleep whose pid file we wrote)
		if [ -n "$_p" ] && [ "$(cat "/proc/$_p/comm" 2>/dev/null)" = sleep ]; then
			kill "$_p" 2>/dev/null
		fi
		rm -f "$MIG_DIR/$_n.pid"
	done
	return 0
}

mighosts_check() {
	_ok=0
	for _x in "A $MIG_ADDR_B" "A $MIG_PEER" "B $MIG_ADDR_A" "B $MIG_PEER" "peer $MIG_ADDR_A" "peer $MIG_ADDR_B"; do
		# shellcheck disable=SC2086
		set -- $_x
		if in_host "$1" ping -c 1 -W 5 "$2" >/dev/null 2>&1; then
			echo "mighosts: $1 -> $2 ok"
		else
			echo "mighosts: $1 -> $2 FAILED"
			_ok=1
		fi
	done
	return $_ok
}

# mighosts_port MAC: the switch's forwarding table (sw0's brforward in a
# sysfs mounted in the switch's namespace: 16-byte entries, MAC, port
# number low byte, is_local, 4 bytes of age, port number high byte) and
# its ports' numbers
mighosts_port() {
	# the MAC as six decimal bytes, as od prints them
	_mac=$(echo "$1" | awk -F: '{
		for (i = 1; i <= 6; i++) {
			h = tolower($i); v = 0
			for (j = 1; j <= length(h); j++) v = v * 16 + index("0123456789abcdef", substr(h, j, 1)) - 1
			printf "%s%d", (i > 1 ? " " : ""), v
		}
	}')
	in_host switch unshare -m --propagation private sh -c '
		mount -t sysfs sysfs /sys || exit 1
		for p in /sys/class/net/sw0/brif/*; do
			echo "PORT ${p##*/} $(($(cat "$p/port_no")))"
		done
		od -An -v -tu1 -w16 /sys/class/net/sw0/brforward | sed "s/^/FDB /"' 2>/dev/null | awk -v mac="$_mac" '
		$1 == "PORT" { name[$3] = $2; next }
		$1 == "FDB" && ($2 " " $3 " " $4 " " $5 " " $6 " " $7) == mac && $9 == 0 { port = $14 * 256 + $8 }
		END {
			n = (port in name) ? name[port] : ""
			if (n == "swA") print "A"; else if (n == "swB") print "B"; else if (n == "swP") print "peer"; else print "none"
		}'
}
