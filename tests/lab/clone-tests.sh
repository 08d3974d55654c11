#!/bin/sh
# Clones of one snapshot diverge (issue 10): a Linux guest with Debian's
# generic kernel (CONFIG_VMGENID=y; tools/mkguest --generic) boots with the
# guest appliance, is paused, snapshotted and killed; after 30 s two fresh
# Firecracker-mode visor processes load the snapshot side by side, each with
# its own tap (network_overrides) and vsock socket (vsock_override), with
# clock_realtime and resume_vm.  Then, in each clone:
#
#   - the kernel reseeded its random generator ("random: crng reseeded due
#     to virtual machine fork": the VM generation ID device's GPE, ACPI
#     Notify and Linux's vmgenid driver), exactly once;
#   - the generation ID (16 bytes the guest reads from /dev/mem at visor's
#     address) is new: not the original's, not the other clone's;
#   - 16 bytes read from /dev/urandom differ between the clones (on its
#     own this does not show the device works: a visor that never raised
#     the GPE passed it too, the clones having mixed different interrupt
#     timings into their pools by then; the reseed message does);
#   - the guest's wall clock (date +%s) lies within the host's clock
#     readings around the step (a few seconds of slack), although the
#     snapshot spent 30 s on disk: clock_realtime stepped it (with
#     clock_realtime false the clones were 32 s behind and this failed);
#   - eth0 works on the clone's own tap (ping of the host's end, the
#     host's end counts the frames), and the clone serves vsock on its own
#     socket;
#   - the guest powers off and visor exits with 0.
#
#   tests/lab/clone-tests.sh DIR      DIR has visor and guest-generic/{vmlinuz,
#                                     initrd.cpio.gz} (the layout of build/)
#
# Runs inside the lab's L1 (busybox sh, curl) or on a host with VT-x/AMD-V.
# The guests are driven through their serial consoles (FIFOs) with the
# steps of tests/guest/api.sh.  Ends with "clone: N passed, N failed".
set -u
DIR=${1:-.}
VISOR="$DIR/visor"
BZ="$DIR/guest-generic/vmlinuz"
INITRD="$DIR/guest-generic/initrd.cpio.gz"
TMO=${GUEST_TESTS_TIMEOUT:-300}
# the VM generation ID's guest-physical address (src/arch/x86/layout.h)
GENID_GPA=0xef000
# how long the snapshot sits on disk before the clones load it
WAIT_S=${CLONE_WAIT:-30}

pass=0 fail=0
ok() { echo "PASS $1${2:+ ($2)}"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
skip() { echo "SKIP $1: $2"; }
finish() {
	for _v in orig ca cb; do vkill $_v; done
	echo "clone: $pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit
}

T=$(mktemp -d "${TMPDIR:-/tmp}/visor-clone.XXXXXX") || exit 1
trap 'for _v in orig ca cb; do vkill $_v; done; rm -rf "$T"' EXIT
trap 'for _v in orig ca cb; do vkill $_v; done; rm -rf "$T"; exit 1' INT TERM

for f in "$VISOR" "$BZ" "$INITRD"; do
	[ -f "$f" ] || { bad setup "$f is missing (tools/mkguest --generic builds the generic kernel's appliance)"; finish; }
done
[ -x "$VISOR" ] || chmod +x "$VISOR" 2>/dev/null
CURL=$(command -v curl) || { bad setup "curl is missing"; finish; }
have_net=1 net_why=""
[ -c /dev/net/tun ] || { have_net=0; net_why="no /dev/net/tun"; }
command -v ip >/dev/null || { have_net=0; net_why="no ip command"; }

# --- several VMs at once: per VM NAME a pid file, a console FIFO on fd FD,
# console output in $T/NAME.out, stderr in $T/NAME.err, API socket
# $T/NAME.sock, request log $T/NAME.api ------------------------------------------
# vstart NAME FD VISOR-ARGS...
vstart() {
	_n=$1 _fd=$2
	shift 2
	rm -f "$T/$_n.in"
	mkfifo "$T/$_n.in" || return 1
	: >"$T/$_n.out"
	: >"$T/$_n.err"
	timeout 1800 "$VISOR" "$@" <"$T/$_n.in" >"$T/$_n.out" 2>"$T/$_n.err" &
	echo $! >"$T/$_n.pid"
	eval "exec $_fd>\"\$T/\$_n.in\""
	echo "$_fd" >"$T/$_n.fd"
	echo 0 >"$T/$_n.seq"
}
vpid() { cat "$T/$1.pid" 2>/dev/null; }
valive() { _p=$(vpid "$1"); [ -n "$_p" ] && kill -0 "$_p" 2>/dev/null; }
# vwait NAME SECS: wait for visor to exit; its status in $T/NAME.rc
vwait() {
	_i=0
	while valive "$1" && [ $_i -lt $(($2 * 2)) ]; do
		sleep 0.5
		_i=$((_i + 1))
	done
	valive "$1" && return 1
	_p=$(vpid "$1")
	[ -n "$_p" ] || return 0
	wait "$_p"
	echo $? >"$T/$1.rc"
	rm -f "$T/$1.pid"
	return 0
}
vkill() {
	_p=$(vpid "$1")
	[ -n "$_p" ] && kill -9 "$_p" 2>/dev/null && wait "$_p" 2>/dev/null
	rm -f "$T/$1.pid"
	return 0
}
vcon() { tr -d '\r' <"$T/$1.out"; }
# vwait_for NAME REGEX SECS: until a console line matches
vwait_for() {
	_i=0
	while [ $_i -lt $(($3 * 2)) ]; do
		vcon "$1" | grep -q -E "$2" && return 0
		valive "$1" || { vcon "$1" | grep -q -E "$2"; return; }
		sleep 0.5
		_i=$((_i + 1))
	done
	return 1
}
# g NAME STEP ARGS...: one step of tests/guest/api.sh on NAME's console;
# true when it succeeded; gout = what the guest printed for it
g() {
	_n=$1
	shift
	_seq=$(($(cat "$T/$_n.seq") + 1))
	echo $_seq >"$T/$_n.seq"
	_from=$(vcon "$_n" | wc -l)
	(
		trap '' PIPE
		eval "printf '%s %s\n' \"\$_seq\" \"\$*\" >&$(cat "$T/$_n.fd")"
	) 2>/dev/null
	if ! vwait_for "$_n" "^STEP-DONE $_seq rc=" "${GT:-300}"; then
		gout=$(vcon "$_n" | tail -n +"$((_from + 1))")
		setwhy "$_n: guest step '$*' did not finish"
		return 1
	fi
	gout=$(vcon "$_n" | tail -n +"$((_from + 1))" | sed "/^STEP-DONE $_seq rc=/q")
	vcon "$_n" | grep -q "^STEP-DONE $_seq rc=0\$" && return 0
	setwhy "$_n: guest step '$*' failed: $(echo "$gout" | tr '\n' '|')"
	return 1
}
gval() { echo "$gout" | sed -n "s/^$1=//p" | head -n 1; }
# api NAME METHOD PATH [BODY]: one request on NAME's socket; sets code, resp
api() {
	_n=$1 _m=$2 _p=$3
	shift 3
	rm -f "$T/resp"
	if [ $# -gt 0 ]; then
		code=$("$CURL" -sS --max-time 120 --unix-socket "$T/$_n.sock" -X "$_m" \
			-H 'Content-Type: application/json' -d "$1" -o "$T/resp" -w '%{http_code}' \
			"http://localhost$_p" 2>"$T/curl.err")
	else
		code=$("$CURL" -sS --max-time 120 --unix-socket "$T/$_n.sock" -X "$_m" \
			-o "$T/resp" -w '%{http_code}' "http://localhost$_p" 2>"$T/curl.err")
	fi
	resp=""
	[ -f "$T/resp" ] && resp=$(tr -d '\r' <"$T/resp")
	echo "$_m $_p${1:+ $1} -> $code ${resp:-(no body)} $(cat "$T/curl.err")" >>"$T/$_n.api"
}
setwhy() { [ -n "$why" ] || why=$1; }
expect() {
	[ "$code" = "$2" ] && return 0
	setwhy "$1: $(tail -n 1 "$T/$1.api"): expected $2"
	return 1
}
wait_sock() {
	_i=0
	while [ ! -S "$T/$1.sock" ] && [ $_i -lt $(($2 * 2)) ]; do
		valive "$1" || return 1
		sleep 0.5
		_i=$((_i + 1))
	done
	[ -S "$T/$1.sock" ]
}
# tap_up NAME ADDR/PREFIX: wait for the tap (visor creates it), configure it
tap_up() {
	_i=0
	while [ ! -e "/sys/class/net/$1" ] && [ $_i -lt 60 ]; do
		sleep 0.5
		_i=$((_i + 1))
	done
	[ -e "/sys/class/net/$1" ] || return 1
	ip addr add "$2" dev "$1" 2>/dev/null
	ip link set "$1" up
}
# report NAME NOTE VM...: PASS, or FAIL with $why and each VM's evidence
report() {
	_name=$1 _note=$2
	shift 2
	if [ -z "$why" ]; then
		ok "$_name" "$_note"
		return
	fi
	bad "$_name" "$why"
	for _v in "$@"; do
		for _f in "$T/$_v.api" "$T/$_v.err"; do
			[ -s "$_f" ] || continue
			echo "    --- ${_f##*/} (last 10 lines)"
			tr -d '\r' <"$_f" | tail -n 10 | cut -c1-400 | sed 's/^/    | /'
		done
		echo "    --- $_v console (last 15 lines)"
		vcon "$_v" | tail -n 15 | sed 's/^/    | /'
	done
}

# =====================================================================================
# the original: booted, its generator initialised, paused, snapshotted, killed
# =====================================================================================
why=""
netargs="" vsargs=""
[ $have_net = 1 ] && netargs="--net tap=vgtap0,id=eth0"
vsargs="--vsock cid=3,uds=$T/orig.vsock"
vstart orig 5 run --kernel "$BZ" --initrd "$INITRD" \
	--cmdline "console=ttyS0 reboot=k panic=1 quiet visor.test=api" --cpus 1 --memory 256M \
	--rng $netargs $vsargs --api-sock "$T/orig.sock" --id vg-orig
vwait_for orig '^API-READY' "$TMO" || why="the guest never got to its test (no API-READY)"
genid0="" clocksrc="" release=""
[ -n "$why" ] || g orig info || true
clocksrc=$(gval CLOCKSOURCE)
[ -n "$why" ] || GT=600 g orig crng || true
if [ -z "$why" ] && g orig vmgenid "$GENID_GPA"; then
	genid0=$(gval GENID)
	[ "$(gval GENID-DRIVER)" != none ] || why="Linux's vmgenid driver bound no device (the DSDT's VGEN)"
	[ -n "$why" ] || [ "$(gval RESEEDS)" = 0 ] || why="a booted guest reports $(gval RESEEDS) VM-fork reseeds"
	case "$genid0" in
	"" | unreadable | 00000000000000000000000000000000) setwhy "the guest read the generation ID as '$genid0'" ;;
	esac
fi
report vmgenid-boot "driver bound to $(gval GENID-DRIVER), ID $genid0, clocksource $clocksrc" orig
booted=0
[ -n "$why" ] || booted=1

why=""
if [ $booted = 1 ]; then
	api orig PATCH /vm '{"state": "Paused"}'
	expect orig 204
	[ -n "$why" ] || api orig PUT /snapshot/create "{\"snapshot_path\": \"$T/vm.state\", \"mem_file_path\": \"$T/vm.mem\"}"
	[ -n "$why" ] || expect orig 204
	vkill orig
	exec 5>&-
	report snapshot-original "paused, snapshot written, process killed" orig
else
	vkill orig
	exec 5>&-
	bad snapshot-original "the original did not boot"
	finish
fi
[ -z "$why" ] || finish

# =====================================================================================
# two clones side by side
# =====================================================================================
sleep "$WAIT_S"
why=""
# clone NAME FD TAP: start a Firecracker-mode visor and load the snapshot
clone() {
	vstart "$1" "$2" --api-sock "$T/$1.sock" --id "vg-$1"
	wait_sock "$1" 60 || { setwhy "$1: the API socket never appeared"; return 1; }
	_ov=""
	[ $have_net = 1 ] && _ov="\"network_overrides\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"$3\"}], "
	api "$1" PUT /snapshot/load "{\"snapshot_path\": \"$T/vm.state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/vm.mem\"}, ${_ov}\"vsock_override\": {\"uds_path\": \"$T/$1.vsock\"}, \"clock_realtime\": true, \"resume_vm\": true}"
	expect "$1" 204
}
clone ca 6 vgtapa
clone cb 7 vgtapb
for c in ca cb; do
	api $c GET /
	echo "$resp" | tr -d '\n' | grep -q '"state" *: *"Running"' || setwhy "$c: GET / after the load: $resp"
done
report clones-loaded "two processes loaded the snapshot (network_overrides, vsock_override, clock_realtime, resume_vm): Running" ca cb

# the generation ID and the kernel's reseed
why=""
for c in ca cb; do
	GT=300 g $c vmgenid "$GENID_GPA" 120 || continue
	eval "genid_$c=\$(gval GENID)"
	[ "$(gval RESEEDS)" = 1 ] || setwhy "$c: the kernel reported $(gval RESEEDS) VM-fork reseeds, expected 1"
done
genid_ca=${genid_ca:-} genid_cb=${genid_cb:-}
if [ -z "$why" ]; then
	[ "$genid_ca" != "$genid0" ] || why="clone ca has the original's generation ID $genid0"
	[ "$genid_cb" != "$genid0" ] || setwhy "clone cb has the original's generation ID $genid0"
	[ "$genid_ca" != "$genid_cb" ] || setwhy "both clones have the generation ID $genid_ca"
	for id in "$genid_ca" "$genid_cb"; do
		[ ${#id} = 32 ] || setwhy "a clone read the generation ID as '$id'"
	done
fi
report vmgenid-clones "both reseeded once; IDs $genid0 -> $genid_ca / $genid_cb" ca cb

# /dev/urandom diverges
why=""
ur_ca="" ur_cb=""
g ca urandom && ur_ca=$(gval URANDOM)
g cb urandom && ur_cb=$(gval URANDOM)
if [ -z "$why" ]; then
	if [ ${#ur_ca} != 32 ] || [ ${#ur_cb} != 32 ]; then
		why="no urandom bytes: '$ur_ca' '$ur_cb'"
	elif [ "$ur_ca" = "$ur_cb" ]; then
		why="both clones read $ur_ca from /dev/urandom"
	fi
fi
report urandom-diverges "$ur_ca / $ur_cb" ca cb

# clock_realtime: the guest's wall clock is the host's, not the snapshot's
why=""
note=""
for c in ca cb; do
	h0=$(date +%s)
	g $c date || continue
	h1=$(date +%s)
	d=$(gval DATE)
	case "$d" in '' | *[!0-9]*) setwhy "$c: no date from the guest"; continue ;; esac
	if [ "$d" -lt $((h0 - 3)) ] || [ "$d" -gt $((h1 + 3)) ]; then
		setwhy "$c: the guest's clock reads $d, the host's $h0..$h1 (the snapshot sat $WAIT_S s on disk)"
	fi
	note="$note $c: guest $d host $h0..$h1;"
done
# KVM gives the wall-clock time with its clock only while the host's
# clocksource is the TSC (KVM_CLOCK_REALTIME); the lab's L1 can lose it
# under load (its TSC marked unstable): visor then says so and the clock
# resumes where it was, which this host cannot check
if grep -q "snapshot has no wall-clock time" "$T/ca.err" "$T/cb.err" 2>/dev/null; then
	skip clock-realtime "this host's KVM gave no wall-clock time with the snapshot (KVM_CLOCK_REALTIME needs a TSC clocksource; L1's: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)); visor warned and resumed the clock where it was"
else
	report clock-realtime "${note# }" ca cb
fi

# each clone's network on its own tap, vsock on its own socket
why=""
if [ $have_net = 0 ]; then
	skip clone-net "$net_why"
else
	n=40
	for c in ca cb; do
		tap=vgtap${c#c}
		n=$((n + 1))
		tap_up "$tap" 169.254.$n.1/24 || { setwhy "$c: tap $tap never appeared"; continue; }
		rx0=$(cat "/sys/class/net/$tap/statistics/rx_packets")
		g $c net 169.254.$n || continue
		echo "$gout" | grep -q '^PING-OK' || setwhy "$c: the guest's ping of 169.254.$n.1 over $tap failed"
		rx1=$(cat "/sys/class/net/$tap/statistics/rx_packets")
		[ "$rx1" -gt "$rx0" ] || setwhy "$c: $tap received no frames ($rx0 -> $rx1)"
	done
	report clone-net "each clone pings the host over its own tap (vgtapa 169.254.41.1, vgtapb 169.254.42.1)" ca cb
fi
why=""
for c in ca cb; do
	[ -S "$T/$c.vsock" ] || setwhy "$c: no vsock socket at $T/$c.vsock (vsock_override)"
done
report clone-vsock "each clone listens on its own vsock socket" ca cb

# both power off
why=""
for c in ca cb; do
	g $c poweroff || true
done
why=""
for c in ca cb; do
	vwait $c 120 || { setwhy "$c: visor did not exit after the guest's poweroff"; continue; }
	[ "$(cat "$T/$c.rc")" = 0 ] || setwhy "$c: visor exited with $(cat "$T/$c.rc")"
done
report clones-poweroff "both guests powered off, visor exited 0" ca cb
finish
