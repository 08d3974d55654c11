#!/bin/sh
# Linux-guest tests of `visor jailer` (Firecracker's jailer command line):
# a guest boots under the jailer and everything the jailer promises is
# checked from outside, in /proc and in the cgroup files.  Runs as root inside
# the lab's L1 (busybox sh, a Linux 6.1 kernel with KVM) or on a host with
# VT-x/AMD-V.
#
#   tests/lab/jailer-tests.sh DIR     (DIR as for guest-tests.sh)
#
# Needs curl (the API is driven with `curl --unix-socket` from outside the
# jail, through BASE/visor/ID/root/...).  Mounts cgroup2 on /sys/fs/cgroup if
# no cgroup2 is mounted.  Three VMs and a few refusals:
#
#   jt1  the default base (/srv/jailer), kernel and initrd hard-linked into the
#        jail beforehand, cgroup v2 limits (cpu.max, cpu.weight, memory.max,
#        pids.max), a network namespace (--netns /proc/PID/ns/net of a holder
#        process), fsize/no-file limits; configured through the API socket
#        the VMM makes in the jail (/run/firecracker.socket), with a NIC on a
#        tap made beforehand in that namespace for the jail's uid
#        (DIR/lab-tools/mktap), which the VMM opens through the jail's
#        /dev/net/tun; the guest pings the namespace's end of it.
#        Started from a chroot on an rbind of / so that pivot_root(2) works
#        (L1's own / is the initial ramfs, which pivot_root cannot move).
#   jt2  --daemonize, booted from a --config-file in the jail, from L1's
#        own / (the jailer moves the jail over the ramfs instead: it says so)
#   jt3  --new-pid-ns: the jailer exits 0, the pid in the jail's visor.pid is
#        PID 1 of a new PID namespace; --parent-cgroup alone joins that cgroup
#
# For each: uid/gid, no capability (effective, permitted, bounding, ambient,
# inheritable), NoNewPrivs, the root is the jail (exactly its files; a host
# file is not there), the namespaces, the cgroup and its limits, the resource
# limits, the device nodes (exactly kvm, net/tun, userfaultfd: those the host
# has, same numbers, the jail's uid/gid, 0600), the guest's boot.
#
# Ends with "jailer: N passed, N failed".
set -u
DIR=${1:-.}
for f in "$DIR/visor" "$DIR/guest/vmlinuz" "$DIR/guest/initrd.cpio.gz"; do
	if [ ! -f "$f" ]; then
		echo "FAIL setup: $f is missing"
		echo "jailer: 0 passed, 1 failed"
		exit 1
	fi
done
. "$(dirname "$0")/lib.sh"

ok() { echo "PASS $1${2:+ ($2)}"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
pids=""
cleanup() {
	for _p in $pids; do kill -9 "$_p" 2>/dev/null; done
	sleep 0.5
	# (on a real host: the jail and the cgroups these tests made)
	rm -rf /srv/jailer/visor/jt1
	[ -n "${CG:-}" ] && rmdir "$CG/visor/jt1" "$CG/visor" "$CG/jtparent" 2>/dev/null
	for _m in $(awk -v t="$T" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r); do
		umount -l "$_m" 2>/dev/null
	done
	rm -rf "$T"
}
finish() {
	echo "jailer: $pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit
}
trap cleanup EXIT
trap 'cleanup; exit 1' INT TERM

[ "$(id -u)" = 0 ] || { bad setup "the jailer tests run as root"; finish; }
[ -c /dev/kvm ] || { bad setup "no /dev/kvm"; finish; }
CURL=$(command -v curl) || { bad setup "curl is missing (tools/lab copies the host's curl into L1)"; finish; }
# cgroup v2
if ! awk '$3 == "cgroup2" { f = 1 } END { exit !f }' /proc/mounts; then
	mkdir -p /sys/fs/cgroup
	mount -t cgroup2 none /sys/fs/cgroup || { bad setup "cannot mount cgroup2 on /sys/fs/cgroup"; finish; }
fi
CG=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
# the exec file: a root-owned copy of visor, not writable by others
cp "$VISOR" "$T/visor" && chown 0:0 "$T/visor" && chmod 755 "$T/visor" ||
	{ bad setup "cannot copy visor"; finish; }
JUID=123 JGID=100
# a network namespace, held by a sleeping process
unshare -n sleep 100000 </dev/null >/dev/null 2>&1 &
NSPID=$!
pids="$pids $NSPID"
i=0
while [ "$(readlink /proc/$NSPID/ns/net 2>/dev/null)" = "$(readlink /proc/$$/ns/net)" ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
NETNS=/proc/$NSPID/ns/net
[ "$(readlink $NETNS)" != "$(readlink /proc/$$/ns/net)" ] || { bad setup "unshare -n did not make a network namespace"; finish; }
# a file of the host the jailed VMM must not see
echo outside >"$T/outside-marker"
INITRAMFS_ROOT=0
awk '$2 == "/" && $3 == "rootfs" { f = 1 } END { exit !f }' /proc/mounts && INITRAMFS_ROOT=1
# the device nodes a jail gets: those of the host
DEVS=""
for d in kvm net/tun userfaultfd; do [ -c "/dev/$d" ] && DEVS="$DEVS $d"; done
want_devtree=$({
	echo dev
	for d in $DEVS; do
		case $d in net/*) echo dev/net ;; esac
		echo "dev/$d"
	done
} | sort -u | tr '\n' ' ')
FCARGS="console=ttyS0 reboot=k panic=1 pci=off quiet visor.test=api"

# --- helpers --------------------------------------------------------------------------
why=""
setwhy() { [ -n "$why" ] || why=$1; }
# report NAME NOTE: PASS, or FAIL with $why and the VM's output
report() {
	if [ -z "$why" ]; then
		ok "$1" "$2"
	else
		bad "$1" "$why"
		for _f in "$T/$vm.err" "$T/$vm.out" "$T/api.log"; do
			[ -s "$_f" ] || continue
			echo "    --- ${_f##*/} (last 12 lines)"
			tr -d '\r' <"$_f" | grep -v '^TICK ' | tail -n 12 | cut -c1-300 | sed 's/^/    | /'
		done
	fi
	why=""
}
# api METHOD PATH [BODY]: one request on $SOCK; sets code and resp
api() {
	_m=$1 _p=$2
	shift 2
	rm -f "$T/resp"
	if [ $# -gt 0 ]; then
		code=$("$CURL" -sS --max-time 60 --unix-socket "$SOCK" -X "$_m" \
			-H 'Accept: application/json' -H 'Content-Type: application/json' \
			-d "$1" -o "$T/resp" -w '%{http_code}' "http://localhost$_p" 2>"$T/curl.err")
	else
		code=$("$CURL" -sS --max-time 60 --unix-socket "$SOCK" -X "$_m" \
			-H 'Accept: application/json' -o "$T/resp" -w '%{http_code}' \
			"http://localhost$_p" 2>"$T/curl.err")
	fi
	resp=""
	[ -f "$T/resp" ] && resp=$(tr -d '\r\n' <"$T/resp")
	echo "$_m $_p${1:+ $1} -> $code ${resp:-(no body)} $(cat "$T/curl.err")" >>"$T/api.log"
}
expect_code() { [ "$code" = "$1" ] || setwhy "$(tail -n 1 "$T/api.log" | cut -c1-300): expected $1"; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' /proc/"$1"/status 2>/dev/null)" != Z ]; }
# wait_gone PID SECS
wait_gone() {
	_i=0
	while alive "$1" && [ $_i -lt $(($2 * 2)) ]; do sleep 0.5; _i=$((_i + 1)); done
	! alive "$1"
}
# wait_file PATH SECS [TEST]: until test -TEST PATH (default -e)
wait_file() {
	_i=0
	while ! test "-${3:-e}" "$1" && [ $_i -lt $(($2 * 2)) ]; do sleep 0.5; _i=$((_i + 1)); done
	test "-${3:-e}" "$1"
}
con() { tr -d '\r' <"$T/$vm.out"; }
# wait_for REGEX SECS PID: a console line matches (early end if PID ended)
wait_for() {
	_i=0
	while [ $_i -lt $(($2 * 2)) ]; do
		con | grep -q -E "$1" && return 0
		alive "$3" || { con | grep -q -E "$1"; return; }
		sleep 0.5
		_i=$((_i + 1))
	done
	return 1
}
# status_field PID KEY: the value of "KEY:" in /proc/PID/status, blanks squeezed
status_field() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" | tr -s ' \t' ' ' | sed 's/ $//'; }
# limit PID NAME: "SOFT HARD" of a /proc/PID/limits line
limit() { grep "^$2 " "/proc/$1/limits" | sed "s/^$2  *//" | awk '{ print $1, $2 }'; }
# jail_root ID [BASE]: BASE/visor/ID/root, made afresh (root's), the kernel
# and initrd hard-linked (copied across file systems)
jail_root() {
	_r=${2:-/srv/jailer}/visor/$1/root
	rm -rf "${2:-/srv/jailer}/visor/$1"
	mkdir -p "$_r"
	for _f in "$BZ:vmlinuz" "$INITRD:initrd.cpio.gz"; do
		ln "${_f%%:*}" "$_r/${_f#*:}" 2>/dev/null || cp "${_f%%:*}" "$_r/${_f#*:}"
	done
	chmod 644 "$_r/vmlinuz" "$_r/initrd.cpio.gz"
	echo "$_r"
}
# vm_config FILE: a Firecracker config file for the appliance (paths in the jail)
vm_config() {
	cat >"$1" <<EOF
{"boot-source": {"kernel_image_path": "/vmlinuz", "initrd_path": "/initrd.cpio.gz",
                 "boot_args": "$FCARGS"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128}}
EOF
	chmod 644 "$1"
}

# --- the checks of a jailed VMM, each one test line ---------------------------------
# check_ids NAME PID
check_ids() {
	u=$(status_field "$2" Uid) g=$(status_field "$2" Gid) gr=$(status_field "$2" Groups)
	[ "$u" = "$JUID $JUID $JUID $JUID" ] || setwhy "Uid: '$u', expected $JUID (real, effective, saved, fs)"
	[ "$g" = "$JGID $JGID $JGID $JGID" ] || setwhy "Gid: '$g', expected $JGID"
	[ -z "$gr" ] || setwhy "supplementary groups left: '$gr'"
	report "$1-uid-gid" "Uid/Gid $JUID/$JGID, no supplementary groups"
}
# check_caps NAME PID
check_caps() {
	for c in CapInh CapPrm CapEff CapBnd CapAmb; do
		v=$(status_field "$2" $c)
		[ "$v" = 0000000000000000 ] || setwhy "$c is $v"
	done
	nnp=$(status_field "$2" NoNewPrivs)
	[ "$nnp" = 1 ] || setwhy "NoNewPrivs is '$nnp'"
	report "$1-no-privileges" "CapInh/Prm/Eff/Bnd/Amb 0, NoNewPrivs 1"
}
# check_root NAME PID JAILROOT "SORTED FILES"
check_root() {
	got=$(ls -A "/proc/$2/root/" 2>&1 | sort | tr '\n' ' ')
	[ "$got" = "$4 " ] || setwhy "the VMM's / has '$got', expected the jail's '$4'"
	# the VMM's / is the jail directory (same inode)
	[ "$(stat -L -c '%d:%i' "/proc/$2/root/")" = "$(stat -c '%d:%i' "$3")" ] ||
		setwhy "/proc/$2/root is not $3"
	[ -e "/proc/$2/root$T/outside-marker" ] && setwhy "a host file ($T/outside-marker) is visible in the jail"
	for h in lab etc bin proc sys tmp; do
		[ -e "/proc/$2/root/$h" ] && setwhy "the host's /$h is visible in the jail"
	done
	cmp -s "/proc/$2/root/visor" "$T/visor" || setwhy "the jail's /visor is not a copy of the exec file"
	[ "$(stat -c '%u:%g %a' "$3/visor")" = "0:0 755" ] || setwhy "the jail's /visor is $(stat -c '%u:%g %a' "$3/visor"), expected 0:0 755"
	[ "$(stat -c '%u:%g %a' "$3")" = "$JUID:$JGID 700" ] || setwhy "the jail root is $(stat -c '%u:%g %a' "$3"), expected $JUID:$JGID 700"
	[ "$(stat -c '%u:%g %a' "$3/run")" = "$JUID:$JGID 700" ] || setwhy "the jail's /run is $(stat -c '%u:%g %a' "$3/run")"
	report "$1-root-is-the-jail" "/ = $3: $4; host files not there"
}
# check_devices NAME PID JAILROOT
check_devices() {
	got=$(cd "/proc/$2/root" 2>/dev/null && find dev | sort | tr '\n' ' ')
	[ "$got" = "$want_devtree" ] || setwhy "the jail's /dev has '$got', expected '$want_devtree'"
	for d in $DEVS; do
		h=$(stat -c '%t:%T' "/dev/$d")
		j=$(stat -c '%F %t:%T %u:%g %a' "$3/dev/$d" 2>&1)
		[ "$j" = "character special file $h $JUID:$JGID 600" ] ||
			setwhy "/dev/$d in the jail: '$j', expected 'character special file $h $JUID:$JGID 600'"
	done
	[ "$(stat -c '%u:%g %a' "$3/dev")" = "$JUID:$JGID 700" ] || setwhy "the jail's /dev is $(stat -c '%u:%g %a' "$3/dev")"
	report "$1-device-nodes" "$(echo $DEVS | tr ' ' ','), the host's numbers, $JUID:$JGID 0600"
}
# check_ns NAME PID NETNS-PATH-OR-"" NEW-PID-NS(0/1)
check_ns() {
	for n in mnt net pid; do eval "host_$n=\$(readlink /proc/$$/ns/$n)" && eval "vmm_$n=\$(readlink /proc/$2/ns/$n)"; done
	# shellcheck disable=SC2154
	{
		[ -n "$vmm_mnt" ] && [ "$vmm_mnt" != "$host_mnt" ] || setwhy "mount namespace '$vmm_mnt' is the host's ($host_mnt)"
		if [ -n "$3" ]; then
			[ "$vmm_net" = "$(readlink "$3")" ] && [ "$vmm_net" != "$host_net" ] ||
				setwhy "network namespace '$vmm_net', expected --netns's $(readlink "$3")"
		else
			[ "$vmm_net" = "$host_net" ] || setwhy "network namespace '$vmm_net' changed without --netns"
		fi
		if [ "$4" = 1 ]; then
			[ -n "$vmm_pid" ] && [ "$vmm_pid" != "$host_pid" ] || setwhy "PID namespace '$vmm_pid' is the host's"
		else
			[ "$vmm_pid" = "$host_pid" ] || setwhy "PID namespace '$vmm_pid' changed without --new-pid-ns"
		fi
	}
	_net="the host's" _pid="the host's"
	[ -n "$3" ] && _net="--netns"
	[ "$4" = 1 ] && _pid=new
	report "$1-namespaces" "mnt new, net $_net, pid $_pid"
}
# check_limits NAME PID NOFILE FSIZE
check_limits() {
	nf=$(limit "$2" "Max open files") fs=$(limit "$2" "Max file size")
	[ "$nf" = "$3 $3" ] || setwhy "Max open files '$nf', expected $3 $3"
	[ "$fs" = "$4 $4" ] || setwhy "Max file size '$fs', expected $4 $4"
	report "$1-resource-limits" "no-file $3, fsize $4"
}

# =====================================================================================
# jt1: API-configured, cgroup limits, netns, resource limits; pivot_root
# =====================================================================================
vm=jt1
SOCK=""
JR=$(jail_root jt1)
mkdir -p "$T/hostroot"
mkfifo "$T/jt1.in"
: >"$T/jt1.out"
# a chroot whose / is an rbind of L1's / (a mount with a parent: pivot_root works);
# an environment variable and a descriptor (7) the VMM must not inherit
JAILTEST_SECRET=leak unshare -m -- sh -c 'r=$1; shift; mount -o rbind / "$r" && exec chroot "$r" "$@"' sh "$T/hostroot" \
	"$T/visor" jailer --id jt1 --exec-file "$T/visor" --uid $JUID --gid $JGID \
	--cgroup-version 2 --cgroup "cpu.max=900000 100000" --cgroup cpu.weight=50 \
	--cgroup memory.max=1073741824 --cgroup pids.max=100 --netns "$NETNS" \
	--resource-limit fsize=2147483648 --resource-limit no-file=1024 \
	<"$T/jt1.in" >"$T/jt1.out" 2>"$T/jt1.err" 7>"$T/leaked-fd" &
P1=$!
pids="$pids $P1"
exec 5>"$T/jt1.in"
SOCK=$JR/run/firecracker.socket
up1=0
wait_file "$SOCK" 60 S || setwhy "the API socket $SOCK never appeared"
if [ -z "$why" ]; then
	[ "$(stat -c '%u:%g' "$SOCK")" = "$JUID:$JGID" ] || setwhy "the API socket is $(stat -c '%u:%g' "$SOCK"), not the jail uid's"
	api GET /
	expect_code 200
fi
[ -n "$why" ] || { api PUT /boot-source "{\"kernel_image_path\": \"/vmlinuz\", \"initrd_path\": \"/initrd.cpio.gz\", \"boot_args\": \"$FCARGS\"}"; expect_code 204; }
[ -n "$why" ] || { api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128}'; expect_code 204; }
HAVE_TAP=0
if [ -z "$why" ] && echo " $DEVS " | grep -q ' net/tun '; then
	# (the VMM has no CAP_NET_ADMIN to make a tap: as with Firecracker's
	# jailer, a persistent one owned by the jail's uid is made beforehand, in
	# the namespace)
	if [ ! -x "$DIR/lab-tools/mktap" ]; then
		echo "SKIP jt1-tap-in-netns: no $DIR/lab-tools/mktap (make lab-tools)"
	elif nsenter -t "$NSPID" -n "$DIR/lab-tools/mktap" tapjt0 $JUID $JGID >"$T/mktap.out" 2>&1; then
		HAVE_TAP=1
		api PUT /network-interfaces/eth0 '{"iface_id": "eth0", "guest_mac": "06:00:AC:10:00:02", "host_dev_name": "tapjt0"}'
		expect_code 204
	else
		setwhy "cannot make tapjt0 in the namespace: $(cat "$T/mktap.out")"
	fi
fi
[ -n "$why" ] || { api PUT /actions '{"action_type": "InstanceStart"}'; expect_code 204; }
[ -n "$why" ] || wait_for '^API-READY' "$TMO" "$P1" || setwhy "the guest never got to its test (no API-READY on the console)"
[ -n "$why" ] || up1=1
grep -q 'jailer: note: / is the initial ramfs' "$T/jt1.err" && setwhy "pivot_root was not used (the jailer fell back to moving the jail onto /)"
report jt1-boots-in-the-jail "API socket in the jail's /run (uid $JUID), configured with curl from outside, guest at API-READY; pivot_root"
if [ $up1 = 1 ]; then
	check_ids jt1 "$P1"
	check_caps jt1 "$P1"
	check_root jt1 "$P1" "$JR" "dev initrd.cpio.gz run visor vmlinuz"
	check_devices jt1 "$P1" "$JR"
	check_ns jt1 "$P1" "$NETNS" 0
	check_limits jt1 "$P1" 1024 2147483648
	# no inherited descriptor above 2, an empty environment
	for fd in /proc/"$P1"/fd/*; do
		[ "$(readlink "$fd")" = "$T/leaked-fd" ] && setwhy "the VMM inherited descriptor ${fd##*/} ($T/leaked-fd)"
	done
	n=$(wc -c <"/proc/$P1/environ")
	[ "$n" = 0 ] || setwhy "the VMM's environment is not empty: $(tr '\0' ' ' <"/proc/$P1/environ" | cut -c1-200)"
	report jt1-fds-and-environment "descriptor 7 of the caller closed, environment empty"
	# the cgroup and its limits
	cg=$(cat "/proc/$P1/cgroup")
	[ "$cg" = "0::/visor/jt1" ] || setwhy "/proc/$P1/cgroup is '$cg', expected 0::/visor/jt1"
	for kv in "cpu.max=900000 100000" cpu.weight=50 memory.max=1073741824 pids.max=100; do
		v=$(cat "$CG/visor/jt1/${kv%%=*}" 2>&1)
		[ "$v" = "${kv#*=}" ] || setwhy "$CG/visor/jt1/${kv%%=*} is '$v', expected '${kv#*=}'"
	done
	for d in "$CG" "$CG/visor"; do
		for c in cpu memory pids; do
			grep -qw "$c" "$d/cgroup.subtree_control" || setwhy "$d/cgroup.subtree_control lacks $c: '$(cat "$d/cgroup.subtree_control")'"
		done
	done
	grep -qx "$P1" "$CG/visor/jt1/cgroup.procs" || setwhy "$P1 is not in $CG/visor/jt1/cgroup.procs"
	report jt1-cgroup "0::/visor/jt1; cpu.max, cpu.weight, memory.max, pids.max read back; controllers enabled above"
	# the VMM attached the tap through the jail's /dev/net/tun, in the netns
	if [ $HAVE_TAP = 1 ]; then
		grep -l 'iff:[[:space:]]*tapjt0$' /proc/"$P1"/fdinfo/* >/dev/null 2>&1 ||
			setwhy "no descriptor of the VMM is attached to tapjt0 (no 'iff: tapjt0' in /proc/$P1/fdinfo)"
		nsenter -t "$NSPID" -n ip link show tapjt0 >"$T/ip.out" 2>&1 || setwhy "no tapjt0 in the --netns namespace: $(cat "$T/ip.out")"
		ip link show tapjt0 >/dev/null 2>&1 && setwhy "tapjt0 is in L1's own network namespace"
		# and the guest's eth0 works through it: the guest pings the namespace's end
		if [ -z "$why" ]; then
			nsenter -t "$NSPID" -n ip addr add 169.254.40.1/24 dev tapjt0
			nsenter -t "$NSPID" -n ip link set tapjt0 up
			printf '1 net 169.254.40\n' >&5
			wait_for '^STEP-DONE 1 rc=' 180 "$P1" || setwhy "the guest's net step did not finish"
			[ -n "$why" ] || con | grep -q '^PING-OK' || setwhy "the guest's ping of 169.254.40.1 (in the namespace) failed: $(con | grep -E '^(PING|MAC)' | tr '\n' ' ')"
		fi
		report jt1-tap-in-netns "the VMM holds tapjt0 of the --netns namespace through the jail's /dev/net/tun; the guest pings the namespace's end"
	fi
	# the guest powers off: visor ends with status 0
	printf '2 poweroff\n' >&5
	wait_gone "$P1" 120 || setwhy "visor still runs 120 s after the guest's poweroff"
	if [ -z "$why" ]; then
		wait "$P1"
		rc=$?
		[ "$rc" = 0 ] || setwhy "visor exited with status $rc after the guest powered off, expected 0"
	fi
	report jt1-poweroff "status 0"
fi
exec 5>&-
kill -9 "$P1" 2>/dev/null

# =====================================================================================
# jt2: --daemonize, --config-file, from L1's own / (the ramfs: the jail moved over it)
# =====================================================================================
vm=jt2
JB=$T/jails
JR=$(jail_root jt2 "$JB")
vm_config "$JR/vm.json"
: >"$T/jt2.out"
"$T/visor" jailer --id jt2 --exec-file "$T/visor" --uid $JUID --gid $JGID --chroot-base-dir "$JB" \
	--daemonize -- --config-file /vm.json --api-sock /api.sock --log-path /visor.log \
	</dev/null >"$T/jt2.out" 2>"$T/jt2.err" &
P2=$!
pids="$pids $P2"
SOCK=$JR/api.sock
up2=0
wait_file "$SOCK" 60 S || setwhy "the API socket $SOCK never appeared"
[ -n "$why" ] || wait_file "$JR/visor.log" 10 || setwhy "no /visor.log in the jail"
_i=0
while [ -z "$why" ] && ! grep -q 'guest boot time' "$JR/visor.log" && [ $_i -lt $((TMO * 2)) ] && alive "$P2"; do
	sleep 0.5
	_i=$((_i + 1))
done
[ -n "$why" ] || grep -q 'guest boot time' "$JR/visor.log" || setwhy "the guest did not boot: no 'guest boot time' in the jail's /visor.log"
if [ -z "$why" ]; then
	api GET /
	expect_code 200
	echo "$resp" | grep -q '"state": *"Running"' || setwhy "GET / says '$resp', expected Running"
fi
[ -n "$why" ] || up2=1
if [ "$INITRAMFS_ROOT" = 1 ]; then
	grep -q 'jailer: note: / is the initial ramfs, which pivot_root cannot move: moved the jail onto / instead' "$T/jt2.err" ||
		setwhy "no note about the initial ramfs on the jailer's stderr"
else
	grep -q 'initial ramfs' "$T/jt2.err" && setwhy "the jailer did not use pivot_root"
fi
report jt2-boots-daemonized "config file in the jail, booted (visor.log), GET / Running$([ "$INITRAMFS_ROOT" = 1 ] && echo "; / is the ramfs: moved the jail over it")"
if [ $up2 = 1 ]; then
	sid=$(awk '{ print $6 }' "/proc/$P2/stat")
	[ "$sid" = "$P2" ] || setwhy "session $sid, expected the VMM's own ($P2: setsid)"
	for fd in 0 1 2; do
		l=$(readlink "/proc/$P2/fd/$fd")
		[ "$l" = /dev/null ] || setwhy "fd $fd is '$l', expected /dev/null"
	done
	[ -s "$T/jt2.out" ] && setwhy "the daemonized VMM wrote to the jailer's stdout: $(head -c 200 "$T/jt2.out")"
	report jt2-daemonized "own session, stdin/stdout/stderr /dev/null"
	check_ids jt2 "$P2"
	check_caps jt2 "$P2"
	check_root jt2 "$P2" "$JR" "api.sock dev initrd.cpio.gz run visor visor.log vm.json vmlinuz"
	check_devices jt2 "$P2" "$JR"
	check_ns jt2 "$P2" "" 0
	check_limits jt2 "$P2" 2048 unlimited
fi
kill -9 "$P2" 2>/dev/null
wait_gone "$P2" 30 || bad jt2-killed "visor still runs after SIGKILL"

# =====================================================================================
# jt3: --new-pid-ns; --parent-cgroup alone joins that (existing) cgroup
# =====================================================================================
vm=jt3
JR=$(jail_root jt3 "$JB")
vm_config "$JR/vm.json"
mkdir -p "$CG/jtparent"
mkfifo "$T/jt3.in"
: >"$T/jt3.out"
"$T/visor" jailer --id jt3 --exec-file "$T/visor" --uid $JUID --gid $JGID --chroot-base-dir "$JB" \
	--new-pid-ns --cgroup-version 2 --parent-cgroup jtparent -- --config-file /vm.json --api-sock /api.sock \
	<"$T/jt3.in" >"$T/jt3.out" 2>"$T/jt3.err" &
J3=$!
exec 5>"$T/jt3.in"
P3=""
wait_gone "$J3" 60 || setwhy "the jailer did not exit (with --new-pid-ns it exits once the VMM runs)"
if [ -z "$why" ]; then
	wait "$J3"
	rc=$?
	[ "$rc" = 0 ] || setwhy "the jailer exited with status $rc, expected 0"
fi
[ -n "$why" ] || P3=$(cat "$JR/visor.pid" 2>/dev/null)
case "$P3" in '' | *[!0-9]*) setwhy "the jail's visor.pid holds '$P3', not a pid" ;; esac
[ -z "$P3" ] || pids="$pids $P3"
up3=0
if [ -z "$why" ]; then
	alive "$P3" || setwhy "process $P3 (visor.pid) is not running"
	nstgid=$(status_field "$P3" NStgid)
	[ "$nstgid" = "$P3 1" ] || setwhy "NStgid '$nstgid', expected '$P3 1' (PID 1 of a new PID namespace)"
	grep -q "^Name:[[:space:]]*visor" "/proc/$P3/status" || setwhy "process $P3 is not visor: $(grep '^Name' "/proc/$P3/status")"
fi
[ -n "$why" ] || wait_for '^API-READY' "$TMO" "$P3" || setwhy "the guest never got to its test (no API-READY on the console)"
[ -n "$why" ] || up3=1
report jt3-new-pid-ns "jailer exit 0, visor.pid $P3 is PID 1 of its namespace (NStgid), guest at API-READY"
if [ $up3 = 1 ]; then
	check_ids jt3 "$P3"
	check_caps jt3 "$P3"
	check_root jt3 "$P3" "$JR" "api.sock dev initrd.cpio.gz run visor visor.pid vm.json vmlinuz"
	check_devices jt3 "$P3" "$JR"
	check_ns jt3 "$P3" "" 1
	check_limits jt3 "$P3" 2048 unlimited
	cg=$(cat "/proc/$P3/cgroup")
	[ "$cg" = "0::/jtparent" ] || setwhy "/proc/$P3/cgroup is '$cg', expected 0::/jtparent"
	[ -e "$CG/jtparent/jt3" ] && setwhy "$CG/jtparent/jt3 was made without --cgroup"
	report jt3-parent-cgroup "joined the existing jtparent (no --cgroup)"
	printf '1 poweroff\n' >&5
	wait_gone "$P3" 120 || setwhy "visor still runs 120 s after the guest's poweroff"
	report jt3-poweroff "the namespace's PID 1 ended"
fi
exec 5>&-
[ -z "$P3" ] || kill -9 "$P3" 2>/dev/null

# =====================================================================================
# refusals that need root: nothing made
# =====================================================================================
vm=refusals
: >"$T/refusals.out"
: >"$T/refusals.err"
# refused NAME PATTERN JAILER-ARGS...: status 1, PATTERN on stderr, no jail (BASE/visor/jx)
refused() {
	_n=$1 _pat=$2
	shift 2
	rm -rf "$JB/visor/jx" "$JB/other/jx"
	"$T/visor" jailer "$@" </dev/null >"$T/refusals.out" 2>"$T/refusals.err"
	_rc=$?
	[ "$_rc" = 1 ] || setwhy "status $_rc, expected 1"
	grep -q -- "$_pat" "$T/refusals.err" || setwhy "stderr lacks '$_pat': $(head -c 300 "$T/refusals.err")"
	[ -e "$JB/visor/jx" ] && setwhy "$JB/visor/jx was made"
	report "$_n" "$_pat"
}
cp "$T/visor" "$T/notroot-visor"
chown 1000:1000 "$T/notroot-visor"
refused refuse-exec-not-root "notroot-visor is owned by uid 1000, not root" --id jx \
	--exec-file "$T/notroot-visor" --uid $JUID --gid $JGID --chroot-base-dir "$JB"
mkdir -p "$JB/visor"
chown 1000 "$JB/visor"
refused refuse-jail-dir-not-root "jail directory $JB/visor is owned by uid 1000" --id jx \
	--exec-file "$T/visor" --uid $JUID --gid $JGID --chroot-base-dir "$JB"
chown 0 "$JB/visor"
refused refuse-unknown-controller "the 'nosuch' controller is not available in $CG" --id jx \
	--exec-file "$T/visor" --uid $JUID --gid $JGID --chroot-base-dir "$JB" --cgroup-version 2 \
	--cgroup nosuch.max=1
[ -e "$CG/visor/jx" ] && bad refuse-unknown-controller-no-cgroup "$CG/visor/jx was made" ||
	ok refuse-unknown-controller-no-cgroup
refused refuse-netns-not-net "is a namespace, but not a network namespace" --id jx \
	--exec-file "$T/visor" --uid $JUID --gid $JGID --chroot-base-dir "$JB" --netns "/proc/$NSPID/ns/pid"

finish
