#!/bin/sh
# Linux-guest tests of visor's Firecracker-compatible REST API and of the VM
# lifecycle (pause/resume, Ctrl-Alt-Del, run-time drive updates, the CLI),
# with the stock Debian kernel and the guest appliance.  Runs inside the
# lab's L1 (busybox sh) or directly on a host with VT-x/AMD-V.
#
#   tests/lab/api-tests.sh DIR        (DIR as for guest-tests.sh; the TCP
#                                      test tool in DIR/lab-tools/tcp-tool)
#
# Needs curl (the API is driven with `curl --unix-socket`, as in
# Firecracker's getting-started guide; tools/lab copies the host's curl and
# its libraries into L1).  Three VMs:
#
#   fc1   Firecracker mode, configured with curl (boot source, a raw rootfs
#         drive, 2 vCPUs/256 MiB, eth0 on a tap), then: pause/resume with a
#         guest counter, every pre-boot request refused after the start, the
#         `visor` CLI (ls/status/pause/resume, human and --json), and last
#         SendCtrlAltDel, which must end the VM
#   load  `visor run ... --api-sock`: 50 pause/resume cycles while the guest
#         writes numbered records (fdatasync each) and streams TCP both ways
#   snap  `visor run` with the record writer on a disk; paused, snapshotted,
#         killed; a new Firecracker-mode visor loads the snapshot and the
#         guest carries on: every record exactly once on the disk; then the
#         same snapshot again through the Uffd memory backend and the test
#         page-fault handler (DIR/lab-tools/uffd-handler)
#   dsnap `visor run --track-dirty-pages`: a Full snapshot, disk reads and
#         writes, then a Diff and a Full snapshot of one paused state; the
#         Diff merged onto the first is byte for byte the second, and the
#         merged snapshot restores and carries on
#   fc3   Firecracker mode: a rate-limited drive against an unlimited one,
#         PATCH of the limiter, PATCH of a drive's backing file
#
# The guest is driven through its serial console (visor's stdin is a FIFO):
# tests/guest/api.sh runs one step per line.  Every API request and its
# response is logged and shown when a test fails.
#
# Ends with "api: N passed, N failed" (the suite is "api-lab" in tests/run-all and
# tests/lab/l1-run.sh; "api" there is tests/api, the API without KVM).
set -u
DIR=${1:-.}
for f in "$DIR/visor" "$DIR/guest/vmlinuz" "$DIR/guest/vmlinux" "$DIR/guest/initrd.cpio.gz"; do
	if [ ! -f "$f" ]; then
		echo "FAIL setup: $f is missing"
		echo "api: 0 passed, 1 failed"
		exit 1
	fi
done
. "$(dirname "$0")/lib.sh"

# (lib.sh's helpers, with this suite's name on the summary line)
ok() { echo "PASS $1${2:+ ($2)}"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
skip() { echo "SKIP $1: $2"; }
finish() {
	vm_kill
	echo "api: $pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit
}
vpid=""
vm_kill() {
	[ -n "$vpid" ] && kill "$vpid" 2>/dev/null
	return 0
}
trap 'vm_kill; rm -rf "$T"' EXIT
trap 'vm_kill; rm -rf "$T"; exit 1' INT TERM

CURL=$(command -v curl) || { bad setup "curl is missing (tools/lab copies the host's curl into L1; apt-get install curl)"; finish; }
if ! "$CURL" --version >/dev/null 2>&1; then
	bad setup "curl does not run: $("$CURL" --version 2>&1 | head -n 2)"
	finish
fi
TCP="$DIR/lab-tools/tcp-tool"
RUN="$T/run" # VISOR_RUN_DIR: where `visor ls` looks
mkdir -p "$RUN"
have_net=1
net_why=""
[ -c /dev/net/tun ] || { have_net=0; net_why="no /dev/net/tun"; }
command -v ip >/dev/null || { have_net=0; net_why="no ip command"; }
# The Firecracker getting-started command line, plus the appliance's test.
FCARGS="console=ttyS0 reboot=k panic=1 pci=off quiet visor.test=api"

sha() { sha256sum | cut -d' ' -f1; }
# up_ms: L1's uptime in ms (10 ms resolution)
up_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

# --- the API -----------------------------------------------------------------------
# api METHOD PATH [BODY]: one request on $SOCK; sets code (HTTP status, 000
# if none) and resp (the body); everything goes to $T/api.log.
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
	[ -f "$T/resp" ] && resp=$(tr -d '\r' <"$T/resp")
	echo "$_m $_p${1:+ $1} -> $code ${resp:-(no body)} $(cat "$T/curl.err")" >>"$T/api.log"
}
# setwhy REASON: the first reason a test fails is kept
setwhy() { [ -n "$why" ] || why=$1; }
# expect CODE: the last request answered CODE; otherwise sets why
expect() {
	[ "$code" = "$1" ] && return 0
	setwhy "$(tail -n 1 "$T/api.log"): expected $1"
	return 1
}
# jstr KEY: a string member of the last response
jstr() { echo "$resp" | tr -d '\n' | sed -n "s/.*\"$1\" *: *\"\([^\"]*\)\".*/\1/p"; }
# getstate: GET /; st gets the state
getstate() {
	api GET /
	st=$(jstr state)
}

# --- one VM at a time: visor in the background, console input from a FIFO ------------
# vm_start NAME VISOR-ARGS...: console in $T/NAME.out, stderr in $T/NAME.err
vm_start() {
	vm=$1
	shift
	rm -f "$T/$vm.in"
	mkfifo "$T/$vm.in" || return 1
	: >"$T/$vm.out"
	: >"$T/$vm.err"
	timeout 1800 "$VISOR" "$@" <"$T/$vm.in" >"$T/$vm.out" 2>"$T/$vm.err" &
	vpid=$!
	exec 5>"$T/$vm.in"
	seq=0
	: >"$T/api.log"
	vm_rc=""
}
alive() { [ -n "$vpid" ] && kill -0 "$vpid" 2>/dev/null; }
# vm_wait SECS: wait for visor to exit; sets vm_rc (empty if it did not)
vm_wait() {
	_i=0
	while alive && [ $_i -lt $(($1 * 2)) ]; do
		sleep 0.5
		_i=$((_i + 1))
	done
	alive && return 1
	wait "$vpid"
	vm_rc=$?
	vpid=""
	exec 5>&-
	return 0
}
# vm_end: stop visor if it still runs
vm_end() {
	if alive; then
		kill "$vpid" 2>/dev/null
		vm_wait 20 || kill -9 "$vpid" 2>/dev/null
	fi
	[ -z "$vpid" ] || { wait "$vpid" 2>/dev/null; vpid=""; }
	exec 5>&-
}
con() { tr -d '\r' <"$T/$vm.out"; }
# cline REGEX: the first console line matching REGEX; clast: the last one
cline() { con | grep -m1 -E "$1"; }
clast() { con | grep -E "$1" | tail -n 1; }
# wait_for REGEX SECS: until a console line matches (fails early if visor ended)
wait_for() {
	_i=0
	while [ $_i -lt $(($2 * 2)) ]; do
		con | grep -q -E "$1" && return 0
		alive || { con | grep -q -E "$1"; return; }
		sleep 0.5
		_i=$((_i + 1))
	done
	return 1
}
# g STEP ARGS...: run one step of tests/guest/api.sh; true when it succeeded.
# GT (s) bounds the wait; sets gout (what the guest printed for the step).
g() {
	seq=$((seq + 1))
	_from=$(con | wc -l)
	(
		trap '' PIPE
		printf '%s %s\n' "$seq" "$*" >&5
	) 2>/dev/null
	if ! wait_for "^STEP-DONE $seq rc=" "${GT:-300}"; then
		gout=$(con | tail -n +"$((_from + 1))" | grep -v '^TICK ')
		setwhy "guest step '$*' did not finish"
		return 1
	fi
	gout=$(con | tail -n +"$((_from + 1))" | sed "/^STEP-DONE $seq rc=/q" | grep -v '^TICK ')
	cline "^STEP-DONE $seq rc=0\$" >/dev/null && return 0
	setwhy "guest step '$*' failed: $(echo "$gout" | tr '\n' '|')"
	return 1
}
# gval KEY: KEY=value from the last step's output
gval() { echo "$gout" | sed -n "s/^$1=//p" | head -n 1; }

# report NAME NOTE: PASS, or FAIL with $why and the evidence (plus the files
# named in $extra)
extra=""
report() {
	if [ -z "$why" ]; then
		ok "$1" "$2"
		return
	fi
	bad "$1" "$why"
	for _f in $extra; do
		[ -s "$_f" ] || continue
		echo "    --- ${_f##*/} (last 10 lines)"
		tail -n 10 "$_f" | sed 's/^/    | /'
	done
	if [ -s "$T/api.log" ]; then
		echo "    --- API requests (last 12)"
		tail -n 12 "$T/api.log" | cut -c1-400 | sed 's/^/    | /'
	fi
	if [ -s "$T/$vm.err" ]; then
		echo "    --- visor stderr (last 15 lines)"
		tr -d '\r' <"$T/$vm.err" | tail -n 15 | sed 's/^/    | /'
	fi
	echo "    --- console (last 20 lines without TICK lines)"
	con | grep -v '^TICK ' | tail -n 20 | sed 's/^/    | /'
}
# wait_sock PATH SECS
wait_sock() {
	_i=0
	while [ ! -S "$1" ] && [ $_i -lt $(($2 * 2)) ]; do
		alive || return 1
		sleep 0.5
		_i=$((_i + 1))
	done
	[ -S "$1" ]
}
# tap_up NAME ADDR/PREFIX: wait for the tap (visor creates it) and configure it
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

# =====================================================================================
# fc1: Firecracker's getting-started flow with curl, then the lifecycle on it
# =====================================================================================
SOCK="$RUN/fc1.sock"
vm=fc1
why=""
cpus="" memkb="" clocksrc=""
dd if=/dev/urandom of="$T/rootfs.img" bs=1048576 count=8 2>/dev/null
rootsum=$(sha <"$T/rootfs.img")
vm_start fc1 --api-sock "$SOCK" --id fc1
wait_sock "$SOCK" 60 || why="the API socket $SOCK never appeared"
if [ -z "$why" ]; then
	getstate
	expect 200 && [ "$st" = "Not started" ] || setwhy "GET / before the start: state '$st', expected 'Not started'"
fi
# (busybox has no `ip tuntap`: visor creates the tap when it does not exist)
[ -n "$why" ] || { api PUT /boot-source "{\"kernel_image_path\": \"$BZ\", \"initrd_path\": \"$INITRD\", \"boot_args\": \"$FCARGS\"}"; expect 204; }
[ -n "$why" ] || { api PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$T/rootfs.img\", \"is_root_device\": true, \"is_read_only\": false}"; expect 204; }
[ -n "$why" ] || { api PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256}'; expect 204; }
if [ -z "$why" ] && [ $have_net = 1 ]; then
	api PUT /network-interfaces/eth0 '{"iface_id": "eth0", "guest_mac": "06:00:AC:10:00:02", "host_dev_name": "tapapi0"}'
	expect 204
fi
[ -n "$why" ] || { api PUT /actions '{"action_type": "InstanceStart"}'; expect 204; }
if [ -z "$why" ]; then
	getstate
	[ "$st" = Running ] || why="GET / after InstanceStart: state '$st' (${resp:-no body}), expected Running"
fi
[ -n "$why" ] || wait_for '^API-READY' "$TMO" || why="the guest appliance never got to its test (no API-READY on the console)"
fc1_up=0
[ -n "$why" ] || fc1_up=1
if [ -z "$why" ] && g info; then
	cpus=$(gval CPUS)
	memkb=$(gval MEMTOTAL)
	clocksrc=$(gval CLOCKSOURCE)
	[ "$cpus" = 2 ] || why="the guest has ${cpus:-?} CPUs, expected 2"
	if [ "${memkb:-0}" -le 200000 ] || [ "${memkb:-0}" -gt 262144 ]; then
		setwhy "guest MemTotal ${memkb:-?} kB does not fit 256 MiB"
	fi
	[ -n "$why" ] || echo "$gout" | grep -q '^DISK=vd[a-z] size=16384 serial=rootfs ro=0$' ||
		why="the guest does not see the rootfs drive (8 MiB, serial rootfs): $(echo "$gout" | grep '^DISK' | tr '\n' ' ')"
fi
if [ -z "$why" ] && g readsum rootfs; then
	got=$(echo "$gout" | sed -n 's/^READSUM rootfs all //p')
	[ "$got" = "$rootsum" ] || why="the guest read different data from rootfs ($got, image $rootsum)"
fi
report fc-getting-started "PUT boot-source/drives/machine-config$([ $have_net = 1 ] && echo '/network-interfaces'), InstanceStart 204, Running; guest: $cpus vCPUs, $memkb kB, rootfs read back identical"

# network: ping both ways over the tap
if [ $have_net = 0 ]; then
	skip fc-net "$net_why"
elif [ $fc1_up = 1 ]; then
	why=""
	tap_up tapapi0 169.254.30.1/24 || why="tap tapapi0 never appeared"
	[ -n "$why" ] || g net 169.254.30 || true
	[ -n "$why" ] || [ "$(gval MAC)" = 06:00:ac:10:00:02 ] || why="guest MAC is '$(gval MAC)', configured 06:00:AC:10:00:02"
	[ -n "$why" ] || echo "$gout" | grep -q '^PING-OK' || why="the guest's ping of the host failed"
	[ -n "$why" ] || ping -c 3 -W 2 169.254.30.2 >"$T/ping" 2>&1 || why="ping of the guest from the host failed: $(tail -n 2 "$T/ping" | tr '\n' ' ')"
	report fc-net "eth0 has the configured MAC; ping guest->host and host->guest"
else
	bad fc-net "the VM did not start"
fi

# --- pause/resume: the guest's counter stops and continues, its clock does not jump ---
why=""
n1="" last="" across="" maxstep="" paused_ms=0
if [ $fc1_up = 1 ]; then
	g ticker || true
	[ -n "$why" ] || wait_for '^TICK 20 ' 120 || why="the guest's counter did not reach 20"
	if [ -z "$why" ]; then
		api PATCH /vm '{"state": "Paused"}'
		expect 204
		t_paused=$(up_ms)
	fi
	if [ -z "$why" ]; then
		getstate
		[ "$st" = Paused ] || why="GET / while paused: state '$st', expected Paused"
	fi
	if [ -z "$why" ]; then
		sleep 1.5 # let visor's console buffer drain
		n1=$(clast '^TICK ' | cut -d' ' -f2)
		sleep 3
		n2=$(clast '^TICK ' | cut -d' ' -f2)
		[ "$n1" = "$n2" ] || why="the guest's console went on while paused: TICK $n1 -> $n2 in 3 s"
		t_resume=$(up_ms)
		api PATCH /vm '{"state": "Resumed"}'
		expect 204
	fi
	if [ -z "$why" ]; then
		getstate
		[ "$st" = Running ] || why="GET / after resume: state '$st', expected Running"
	fi
	[ -n "$why" ] || wait_for "^TICK $((n1 + 20)) " 120 || why="the counter did not continue after resume (last $(clast '^TICK '), paused at $n1)"
	if [ -z "$why" ]; then
		paused_ms=$((t_resume - t_paused))
		# contiguous from 1 (no gap, no restart); the step across the pause
		con | sed -n 's/^TICK \([0-9]*\) \([0-9]*\)$/\1 \2/p' >"$T/ticks"
		res=$(awk -v n1="$n1" '
			NR == 1 { first = $1 }
			NR > 1 && $1 != prev + 1 { breaks = breaks " " prev "->" $1 }
			NR > 1 && $1 == n1 + 1 { across = $2 - pms }
			NR > 1 && $1 != n1 + 1 && $2 - pms > maxstep { maxstep = $2 - pms }
			{ prev = $1; pms = $2 }
			END { printf "%s %s %s %s%s\n", first, prev, across + 0, maxstep + 0, breaks }' "$T/ticks")
		set -- $res
		first=$1 last=$2 across=$3 maxstep=$4
		shift 4
		if [ "$first" != 1 ] || [ $# -gt 0 ]; then
			why="the counter is not contiguous: first $first, breaks:$* (paused at $n1)"
		elif [ "$across" -ge $((paused_ms / 2)) ]; then
			why="the guest's CLOCK_MONOTONIC advanced $across ms across a pause of $paused_ms ms (clocksource ${clocksrc:-?}; other steps at most $maxstep ms)"
		fi
	fi
	report pause-resume "no TICK while paused $((${paused_ms:-0} / 1000)) s (stopped at $n1), counter 1..$last contiguous; guest clock +$across ms across the pause (largest other step $maxstep ms; clocksource $clocksrc)"
else
	bad pause-resume "the VM did not start"
fi

# --- every pre-boot request after the start: 400 with fault_message, nothing changes ---
why=""
if [ $fc1_up = 1 ]; then
	api GET /vm/config
	cfg0=$resp
	expect 200
	refused="" fmsg=""
	dd if=/dev/zero of="$T/new.img" bs=1048576 count=1 2>/dev/null
	for req in "PUT /boot-source {\"kernel_image_path\": \"$BZ\", \"boot_args\": \"console=ttyS0\"}" \
		"PUT /drives/new {\"drive_id\": \"new\", \"path_on_host\": \"$T/new.img\", \"is_root_device\": false, \"is_read_only\": false}" \
		'PUT /machine-config {"vcpu_count": 1, "mem_size_mib": 128}' \
		'PUT /actions {"action_type": "InstanceStart"}'; do
		m=${req%% *}
		r=${req#* }
		p=${r%% *}
		b=${r#* }
		api "$m" "$p" "$b"
		if [ "$code" != 400 ]; then
			setwhy "$m $p after the start answered $code ${resp:-(no body)}, expected 400"
		elif ! echo "$resp" | grep -q '"fault_message" *: *"[^"]'; then
			setwhy "$m $p: 400 without a fault_message: $resp"
		else
			refused="$refused $p"
			[ "$p" = /machine-config ] && fmsg=$(jstr fault_message)
		fi
	done
	api GET /vm/config
	[ -n "$why" ] || [ "$resp" = "$cfg0" ] || why="GET /vm/config changed: before $cfg0 after $resp"
	getstate
	[ -n "$why" ] || [ "$st" = Running ] || why="state '$st' after the refused requests"
	n0=$(clast '^TICK ' | cut -d' ' -f2)
	[ -n "$why" ] || wait_for "^TICK $((n0 + 10)) " 60 || why="the guest stopped after the refused requests"
	report wrong-state-after-start "400 + fault_message for$refused; config unchanged, guest running; e.g. '$fmsg'"
else
	bad wrong-state-after-start "the VM did not start"
fi

# --- the visor CLI on the running VM ---------------------------------------------------
why=""
if [ $fc1_up = 1 ]; then
	export VISOR_RUN_DIR="$RUN"
	# cli NAME ARGS...: run `visor ARGS`, output in $T/cli-NAME, rc in crc
	cli() {
		_n=$1
		shift
		timeout 60 "$VISOR" "$@" >"$T/cli-$_n" 2>&1
		crc=$?
		echo "\$ visor $* -> rc $crc" >>"$T/api.log"
		sed 's/^/    /' "$T/cli-$_n" >>"$T/api.log"
	}
	clichk() { # clichk NAME GREP-REGEX DESCRIPTION
		[ -n "$why" ] && return
		if [ "$crc" != 0 ]; then
			why="visor ($1) exited $crc: $(head -c 300 "$T/cli-$1" | tr '\n' '|')"
		elif ! grep -q -E "$2" "$T/cli-$1"; then
			why="$3: $(head -c 400 "$T/cli-$1" | tr '\n' '|')"
		fi
	}
	cli status status "$SOCK"
	clichk status '^state: *Running$' "visor status does not say Running"
	clichk status '^vcpus: *2$' "visor status does not show 2 vCPUs"
	clichk status '^memory: *256 MiB$' "visor status does not show 256 MiB"
	cli status-json status "$SOCK" --json
	clichk status-json '"state" *: *"Running"' "visor status --json has no state Running"
	[ -n "$why" ] || head -c 1 "$T/cli-status-json" | grep -q '{' || why="visor status --json is not a JSON object: $(head -c 200 "$T/cli-status-json")"
	cli pause pause "$SOCK"
	clichk pause 'paused' "visor pause does not say paused"
	cli status-p status "$SOCK"
	clichk status-p '^state: *Paused$' "visor status after visor pause does not say Paused"
	if [ -z "$why" ]; then
		sleep 1.5
		a=$(clast '^TICK ')
		sleep 2
		[ "$(clast '^TICK ')" = "$a" ] || why="the guest ran on after visor pause ($a -> $(clast '^TICK '))"
	fi
	cli resume resume "$SOCK"
	clichk resume 'resumed' "visor resume does not say resumed"
	cli ls ls
	clichk ls '^NAME +STATE' "visor ls has no header"
	clichk ls "^fc1 +Running +2 +256M .*$SOCK" "visor ls does not list fc1 Running with 2 vCPUs, 256M and its socket"
	cli ls-json ls --json
	clichk ls-json '"name" *: *"fc1"' "visor ls --json does not name fc1"
	clichk ls-json '"state" *: *"Running"' "visor ls --json: no state Running"
	[ -n "$why" ] || head -c 1 "$T/cli-ls-json" | grep -q '\[' || why="visor ls --json is not a JSON array: $(head -c 200 "$T/cli-ls-json")"
	# by name (VISOR_RUN_DIR/NAME.sock), with --json
	cli pause-json pause fc1 --json
	clichk pause-json '"ok" *: *true' "visor pause fc1 --json"
	cli status-n status fc1
	clichk status-n '^state: *Paused$' "visor status fc1 after pausing by name"
	cli resume-json resume fc1 --json
	clichk resume-json '"ok" *: *true' "visor resume fc1 --json"
	getstate
	[ -n "$why" ] || [ "$st" = Running ] || why="state '$st' after the CLI's resume"
	unset VISOR_RUN_DIR
	report cli-control "status/pause/resume by path and by name, ls with VISOR_RUN_DIR; human and --json: $(grep '^fc1' "$T/cli-ls" | tr -s ' ')"
	# a running VM has an uptime (GET / of the CLI's describe(): uptime_ms)
	why="" crc=0
	clichk status '^uptime: *[0-9]' "visor status shows no uptime for the running VM"
	clichk ls "^fc1 +Running +2 +256M +[0-9]" "visor ls shows no uptime for the running VM"
	report cli-uptime "$(grep '^uptime' "$T/cli-status"); ls: $(grep '^fc1' "$T/cli-ls" | tr -s ' ')"
else
	bad cli-control "the VM did not start"
	bad cli-uptime "the VM did not start"
fi

# --- SendCtrlAltDel ends the VM --------------------------------------------------------
# cad_check SECS: after a SendCtrlAltDel, the guest's handler runs and visor
# exits with 2 (what the guest made of its keyboard when nothing happens)
cad_check() {
	if vm_wait "$1"; then
		cline '^GOT-CTRL-ALT-DEL' >/dev/null || setwhy "visor exited ($vm_rc) but the guest never saw Ctrl-Alt-Del"
		[ -n "$why" ] || [ "$vm_rc" = 2 ] || why="visor exited with $vm_rc after the guest's reboot, expected 2 (guest rebooted)"
		return
	fi
	_saw=no
	cline '^GOT-CTRL-ALT-DEL' >/dev/null && _saw=yes
	why="visor still runs $1 s after SendCtrlAltDel (guest saw it: $_saw)"
	_w=$why
	GT=60 g kbd
	why="$_w; guest: $(echo "$gout" | grep '^KBD-' | tr '\n' '|')"
}
# The appliance's /init is a shell that does not handle Ctrl-Alt-Del, so the
# guest arms `api-tool cad`: like init it turns the kernel's immediate restart
# off (reboot(RB_DISABLE_CAD)), becomes the kernel's cad_pid and reboots on
# the SIGINT (init's ctrlaltdel entry).  With reboot=k the reboot resets
# through the i8042; visor's documented exit status for a guest reboot is 2
# (Firecracker itself exits 0).  The boot arguments are those of Firecracker's
# getting-started guide, without the i8042.* options of its default command
# line (its docs call them a boot-time optimisation); the second test below
# (fc3) has them.
why=""
if [ $fc1_up = 1 ]; then
	g cad || true
	[ -n "$why" ] || wait_for '^CAD-ARMED' 30 || why="the guest could not arm its Ctrl-Alt-Del handler: $(echo "$gout" | tr '\n' '|') $(cline '^CAD-')"
	[ -n "$why" ] || { api PUT /actions '{"action_type": "SendCtrlAltDel"}'; expect 204; }
	[ -n "$why" ] || cad_check 60
	report ctrl-alt-del "204; guest got SIGINT as cad_pid and rebooted; visor exit status $vm_rc"
else
	bad ctrl-alt-del "the VM did not start"
fi
vm_end

# =====================================================================================
# load: 50 pause/resume cycles with disk writes and TCP both ways in flight
# =====================================================================================
vm=load
SOCK="$T/load.sock"
why=""
extra="$T/h2g.out $T/g2h.out"
nrec="" w0=0 w1=0 s0=0 s1=0 r0=0 r1=0 t0=0 t1=0
for f in g2h.sent g2h.got h2g.sent h2g.got; do : >"$T/$f"; done
truncate -s 512M "$T/load.img" 2>/dev/null || dd if=/dev/zero of="$T/load.img" bs=1048576 count=0 seek=512 2>/dev/null
netargs=""
[ $have_net = 1 ] && [ ! -x "$TCP" ] && net_why="no $TCP (make $TCP)"
[ $have_net = 1 ] && [ -x "$TCP" ] && netargs="--net tap=tapapi1,mac=52:54:00:12:34:57"
vm_start load run --kernel "$BZ" --initrd "$INITRD" --cmdline "$BASE visor.test=api" --cpus 2 \
	--memory 256M --disk "$T/load.img,id=load" $netargs --api-sock "$SOCK"
wait_for '^API-READY' "$TMO" || why="the guest never got to its test (no API-READY)"
if [ -z "$why" ] && [ -n "$netargs" ]; then
	tap_up tapapi1 169.254.31.1/24 || why="tap tapapi1 never appeared"
	[ -n "$why" ] || g net 169.254.31 || true
	[ -n "$why" ] || echo "$gout" | grep -q '^PING-OK' || why="no ping from the guest before the load"
fi
hsink="" hsend=""
rm -f "$T/stop"
if [ -z "$why" ] && [ -n "$netargs" ]; then
	# host end: a sink loop for guest->host (port 5001), a sender loop for
	# host->guest (port 5002); a 0-byte transfer ends the other side's loop
	(
		f=0
		while [ $f -lt 50 ]; do
			o=$("$TCP" sink 5001 2>&1)
			echo "$o" | grep -v '^LISTENING'
			case "$o" in
			*"SINK bytes=0 "*) break ;;
			*SINK*) ;;
			*) f=$((f + 1)); sleep 0.2 ;;
			esac
		done
	) >"$T/g2h.out" 2>&1 &
	hsink=$!
fi
if [ -z "$why" ]; then
	if [ -n "$netargs" ]; then g load-start load 169.254.31 || true; else g load-start load || true; fi
fi
if [ -z "$why" ] && [ -n "$netargs" ]; then
	(
		while [ ! -e "$T/stop" ]; do
			echo "START $(up_ms)"
			"$TCP" send 169.254.31.2 5002 2097152 || { echo "SEND-FAILED rc=$? at $(up_ms) ms"; break; }
		done
		"$TCP" send 169.254.31.2 5002 0
	) >"$T/h2g.out" 2>&1 &
	hsend=$!
fi
# traffic flowing: records written, a transfer done each way
nsent() { cat "$T/$1.out" 2>/dev/null | grep -c "^$2 "; }
if [ -z "$why" ]; then
	i=0
	while [ $i -lt 240 ]; do
		cline '^WRITER-PROGRESS' >/dev/null &&
			{ [ -z "$netargs" ] || { [ "$(nsent g2h SINK)" -ge 1 ] && [ "$(nsent h2g SENT)" -ge 1 ]; }; } && break
		sleep 0.5
		i=$((i + 1))
	done
	cline '^WRITER-PROGRESS' >/dev/null || why="the guest's writer made no progress: $(cline 'WRITER-')"
	[ -n "$why" ] || [ -z "$netargs" ] || { [ "$(nsent g2h SINK)" -ge 1 ] && [ "$(nsent h2g SENT)" -ge 1 ]; } ||
		why="no TCP transfer completed before the pause cycles (g2h: $(cat "$T/g2h.out" | tr '\n' ' '), h2g: $(cat "$T/h2g.out" | tr '\n' ' '))"
fi
cycles=0
if [ -z "$why" ]; then
	w0=$(clast '^WRITER-PROGRESS' | cut -d' ' -f2)
	s0=$(nsent g2h SINK) r0=$(nsent h2g SENT)
	t0=$(up_ms)
	echo "CYCLES-START $t0" >>"$T/api.log"
	while [ $cycles -lt 50 ]; do
		api PATCH /vm '{"state": "Paused"}'
		expect 204 || break
		sleep 0.1
		api PATCH /vm '{"state": "Resumed"}'
		expect 204 || break
		sleep 0.1
		cycles=$((cycles + 1))
	done
	t1=$(up_ms)
	echo "CYCLES-END $t1" >>"$T/api.log"
	w1=$(clast '^WRITER-PROGRESS' | cut -d' ' -f2)
	s1=$(nsent g2h SINK) r1=$(nsent h2g SENT)
	[ -n "$why" ] || alive || why="visor exited during the pause/resume cycles"
	[ -n "$why" ] || ! cline '^WRITER-(DONE|FAILED)' >/dev/null || why="the writer ended during the cycles: $(cline '^WRITER-(DONE|FAILED)')"
	[ -n "$why" ] || { getstate; [ "$st" = Running ]; } || why="state '$st' after the cycles"
fi
# stop: the host's sender first, then the guest (its sender ends the host's sink)
touch "$T/stop"
if [ -n "$hsend" ]; then
	i=0
	while kill -0 "$hsend" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.5; i=$((i + 1)); done
	kill -0 "$hsend" 2>/dev/null && { setwhy "the host's TCP sender did not finish"; kill "$hsend"; }
fi
if alive && cline '^LOAD-STARTED' >/dev/null; then
	GT=600 g load-stop || true
fi
if [ -n "$hsink" ]; then
	i=0
	while kill -0 "$hsink" 2>/dev/null && [ $i -lt 240 ]; do sleep 0.5; i=$((i + 1)); done
	kill -0 "$hsink" 2>/dev/null && { setwhy "the host's TCP sink did not get the end of the guest's stream"; kill "$hsink"; }
fi
if [ -z "$why" ]; then
	nrec=$(echo "$gout" | sed -n 's/^RECORDS-OK \([0-9]*\)$/\1/p')
	gsum=$(echo "$gout" | sed -n 's/^RECORDS-SUM [0-9]* //p')
	[ -n "$nrec" ] || why="the guest's check of its records failed: $(echo "$gout" | grep -E 'RECORDS|WRITER' | tr '\n' ' ')"
	[ -n "$why" ] || [ "$(dd if="$T/load.img" bs=65536 count="$nrec" 2>/dev/null | sha)" = "$gsum" ] ||
		why="the image file differs from what the guest read back ($nrec records)"
	[ -n "$why" ] || [ "$(dd if="$T/load.img" bs=65536 skip="$nrec" count=1 2>/dev/null | sha)" = "$(head -c 65536 /dev/zero | sha)" ] ||
		why="the image has data after the guest's last record"
fi
if [ -z "$why" ] && [ -n "$netargs" ]; then
	echo "$gout" | sed -n 's/^G2H SENT \([0-9]*\) sum=\(.*\)$/\1 \2/p' >"$T/g2h.sent"
	sed -n 's/^SINK bytes=\([0-9]*\) sum=\(.*\)$/\1 \2/p' "$T/g2h.out" >"$T/g2h.got"
	sed -n 's/^SENT \([0-9]*\) sum=\(.*\)$/\1 \2/p' "$T/h2g.out" >"$T/h2g.sent"
	echo "$gout" | sed -n 's/^H2G SINK bytes=\([0-9]*\) sum=\(.*\)$/\1 \2/p' >"$T/h2g.got"
	if grep -q FAILED "$T/h2g.out" || echo "$gout" | grep -q 'FAILED'; then
		why="a transfer failed (pause/resume cycles from $t0 to $t1 ms of L1 uptime): host->guest: $(grep -v '^START' "$T/h2g.out" | tr '\n' ' ') guest->host: $(echo "$gout" | grep '^G2H' | grep -v '^G2H SENT' | tr '\n' ' ')"
	elif ! cmp -s "$T/g2h.sent" "$T/g2h.got"; then
		why="guest->host streams differ: sent [$(tr '\n' ',' <"$T/g2h.sent")] received [$(tr '\n' ',' <"$T/g2h.got")]"
	elif ! cmp -s "$T/h2g.sent" "$T/h2g.got"; then
		why="host->guest streams differ: sent [$(tr '\n' ',' <"$T/h2g.sent")] received [$(tr '\n' ',' <"$T/h2g.got")]"
	fi
fi
if [ -z "$why" ] && alive; then
	g poweroff || true
	why=""
	vm_wait 120 || why="visor did not exit after the guest's poweroff"
	[ -n "$why" ] || [ "$vm_rc" = 0 ] || why="visor exited with $vm_rc after poweroff"
fi
if [ -z "$netargs" ]; then
	netnote="no network ($net_why)"
else
	netnote="TCP: $(grep -c -v '^0 ' "$T/g2h.sent") transfers guest->host and $(grep -c -v '^0 ' "$T/h2g.sent") host->guest of 2 MiB byte-identical, $((s1 - s0))+$((r1 - r0)) completed during the cycles"
fi
report pause-resume-under-load "$cycles cycles in $(((t1 - t0) / 1000)) s; $nrec records (64 KiB, fdatasync each) verified in the guest and in the image, $((w1 - w0)) written during the cycles; $netnote"
vm_end
extra=""

# =====================================================================================
# snapshot-restore-under-load (issue 10): the guest's record writer runs on
# a virtio disk (64 KiB records, fdatasync each); the VM is paused and
# snapshotted and its process killed; a new visor (Firecracker mode, a new
# console FIFO) loads the snapshot with resume_vm.  The guest carries on
# where it was: its command loop answers the next step on the new console,
# the writer goes on numbering, and at the end every record is on the disk
# exactly once (the guest's check), the image holds what the guest read
# back, and nothing follows the last record.
vm=snap
SOCK="$T/snap.sock"
why=""
extra=""
truncate -s 256M "$T/snap.img" 2>/dev/null || dd if=/dev/zero of="$T/snap.img" bs=1048576 count=0 seek=256 2>/dev/null
vm_start snap run --kernel "$BZ" --initrd "$INITRD" --cmdline "$BASE visor.test=api" --cpus 2 \
	--memory 256M --disk "$T/snap.img,id=snap" --api-sock "$SOCK"
wait_for '^API-READY' "$TMO" || why="the guest never got to its test (no API-READY)"
[ -n "$why" ] || g load-start snap || true
if [ -z "$why" ]; then
	i=0
	while [ $i -lt 240 ] && [ "$(con | grep -c '^WRITER-PROGRESS')" -lt 2 ]; do sleep 0.5; i=$((i + 1)); done
	[ "$(con | grep -c '^WRITER-PROGRESS')" -ge 2 ] || why="the guest's writer made no progress: $(cline 'WRITER-')"
fi
wsnap="" snapms=""
if [ -z "$why" ]; then
	api PATCH /vm '{"state": "Paused"}'
	expect 204
fi
if [ -z "$why" ]; then
	wsnap=$(clast '^WRITER-PROGRESS' | cut -d' ' -f2)
	t0=$(up_ms)
	api PUT /snapshot/create "{\"snapshot_path\": \"$T/snap.state\", \"mem_file_path\": \"$T/snap.mem\"}"
	expect 204
	snapms=$(($(up_ms) - t0))
fi
# the original is killed where it stands (paused): the disk image is what
# it was at the snapshot
if alive; then
	kill -9 "$vpid" 2>/dev/null
	wait "$vpid" 2>/dev/null
fi
vpid=""
exec 5>&-
# (for snapshot-restore-uffd below: the disk as it was at the snapshot; the
# writer, sequential, is at most a few records past its last progress line)
rm -f "$T/snap-at-snapshot.img"
[ -z "$why" ] && [ -n "$wsnap" ] &&
	dd if="$T/snap.img" of="$T/snap-at-snapshot.img" bs=65536 count=$((wsnap + 64)) 2>/dev/null
if [ -z "$why" ]; then
	"$VISOR" --describe-snapshot "$T/snap.state" >"$T/snap.desc" 2>&1 ||
		why="--describe-snapshot refused the state file: $(head -n 3 "$T/snap.desc" | tr '\n' ' ')"
fi
# restored_records NAME BACKEND: a new Firecracker-mode visor NAME loads
# the snapshot (mem_backend BACKEND, a JSON object) and resumes; the
# guest's record writer numbers on past the snapshot's record, its check of
# every record passes, the image holds exactly those records, and the guest
# powers off.  Sets why (unless already set), loadms, nrec.
restored_records() {
	if [ -z "$why" ]; then
		vm_start "$1" --api-sock "$T/$1.sock" --id "$1"
		seq=$steps # the guest's step count as it was at the snapshot
		SOCK="$T/$1.sock"
		i=0
		while [ ! -S "$SOCK" ] && [ $i -lt 40 ]; do sleep 0.25; i=$((i + 1)); done
		t0=$(up_ms)
		api PUT /snapshot/load "{\"snapshot_path\": \"$T/snap.state\", \"mem_backend\": $2, \"resume_vm\": true}"
		expect 204
		loadms=$(($(up_ms) - t0))
		[ -n "$why" ] || { getstate; [ "$st" = Running ]; } || why="state '$st' after the load"
	fi
	if [ -z "$why" ]; then
		# the writer numbers on from where it was (progress every 16 records)
		i=0
		while [ $i -lt 240 ] && ! cline '^WRITER-PROGRESS' >/dev/null; do sleep 0.5; i=$((i + 1)); done
		wnext=$(cline '^WRITER-PROGRESS' | cut -d' ' -f2)
		[ -n "$wnext" ] || why="the restored guest's writer made no progress"
		[ -n "$why" ] || [ "$wnext" -gt "$wsnap" ] ||
			why="the restored writer's first progress ($wnext) is not past the snapshot's ($wsnap)"
	fi
	nrec=""
	if [ -z "$why" ]; then
		GT=600 g load-stop || true
		nrec=$(echo "$gout" | sed -n 's/^RECORDS-OK \([0-9]*\)$/\1/p')
		gsum=$(echo "$gout" | sed -n 's/^RECORDS-SUM [0-9]* //p')
		[ -n "$why" ] || [ -n "$nrec" ] || why="the guest's check of its records failed: $(echo "$gout" | grep -E 'RECORDS|WRITER' | tr '\n' ' ')"
		[ -n "$why" ] || [ "$(dd if="$T/snap.img" bs=65536 count="$nrec" 2>/dev/null | sha)" = "$gsum" ] ||
			why="the image file differs from what the guest read back ($nrec records)"
		[ -n "$why" ] || [ "$(dd if="$T/snap.img" bs=65536 skip="$nrec" count=1 2>/dev/null | sha)" = "$(head -c 65536 /dev/zero | sha)" ] ||
			why="the image has data after the guest's last record"
	fi
	if [ -z "$why" ]; then
		g poweroff || true
		why="" # the step never reports: the guest powers off
		vm_wait 120 || why="the restored visor did not exit after the guest's poweroff"
		[ -n "$why" ] || [ "$vm_rc" = 0 ] || why="the restored visor exited with $vm_rc after poweroff"
	fi
}
steps=$seq
restored_records snap2 "{\"backend_type\": \"File\", \"backend_path\": \"$T/snap.mem\"}"
report snapshot-restore-under-load "snapshot at record ${wsnap:-?} in ${snapms:-?} ms, loaded in ${loadms:-?} ms (lab times), $nrec records verified in the guest and in the image"
vm_end
extra=""

# =====================================================================================
# snapshot-restore-uffd (issue 10): the same snapshot loaded once more, with
# the Uffd memory backend: guest memory is anonymous and every page comes
# from the test page-fault handler (lab-tools/uffd-handler: it receives the
# memory layout and the userfaultfd on its socket and copies pages from
# snap.mem), with the disk put back as it was at the snapshot.  The guest
# carries on as with the File backend and passes the same record check;
# the handler served faults.
vm=snapu
why=""
HANDLER="$DIR/lab-tools/uffd-handler"
ZERO64K=$(head -c 65536 /dev/zero | sha)
hpid=""
if [ ! -s "$T/snap.state" ] || [ ! -s "$T/snap-at-snapshot.img" ] || [ -z "${steps:-}" ]; then
	why="no snapshot from snapshot-restore-under-load"
elif [ ! -x "$HANDLER" ]; then
	why="no page-fault handler at $HANDLER (make lab-tools)"
elif [ "$(dd if="$T/snap-at-snapshot.img" bs=65536 skip=$((wsnap + 63)) count=1 2>/dev/null | sha)" != "$ZERO64K" ]; then
	why="the disk at the snapshot had records past $((wsnap + 63)): the copy is not the whole disk"
fi
if [ -z "$why" ]; then
	cp "$T/snap-at-snapshot.img" "$T/snap.img" && truncate -s 256M "$T/snap.img" ||
		why="cannot put the disk back as it was at the snapshot"
fi
if [ -z "$why" ]; then
	rm -f "$T/uffd.sock"
	"$HANDLER" "$T/uffd.sock" "$T/snap.mem" >"$T/uffd.out" 2>&1 &
	hpid=$!
	i=0
	while [ ! -S "$T/uffd.sock" ] && [ $i -lt 40 ]; do sleep 0.25; i=$((i + 1)); done
	[ -S "$T/uffd.sock" ] || why="the page-fault handler did not listen: $(cat "$T/uffd.out")"
fi
extra="$T/uffd.out"
restored_records snapu "{\"backend_type\": \"Uffd\", \"backend_path\": \"$T/uffd.sock\"}"
served=""
if [ -n "$hpid" ]; then
	# the handler ends (and reports) when visor's connection closes
	i=0
	while kill -0 "$hpid" 2>/dev/null && [ $i -lt 40 ]; do sleep 0.25; i=$((i + 1)); done
	kill "$hpid" 2>/dev/null
	wait "$hpid" 2>/dev/null
	served=$(sed -n 's/^uffd-handler: served \([0-9]*\) faults.*/\1/p' "$T/uffd.out")
	[ -n "$why" ] || [ "${served:-0}" -gt 0 ] || why="the handler served no faults"
fi
report snapshot-restore-uffd "loaded in ${loadms:-?} ms (lab time), ${served:-?} faults served by the handler, $nrec records verified in the guest and in the image"
vm_end
extra=""

# =====================================================================================
# snapshot-diff-merge-under-disk-io (issue 10, Diff snapshots): the guest
# reads a random disk with O_DIRECT into one buffer, over and over (after
# the first pass only virtio-blk writes that buffer: pages KVM's dirty log
# never sees, only visor's own marking), and its record writer writes the
# other disk.  Full snapshot A while they run; they run on; then of one
# paused state a Diff B (`visor snapshot --diff`) and a Full C.  A merged
# with B (`visor snapshot merge`) must be byte for byte C's memory; the
# merged snapshot, loaded into a new visor, carries on: the reader's every
# pass still reads the disk's bytes, the writer's records are each on the
# disk exactly once.
vm=dsnap
SOCK="$T/dsnap.sock"
why=""
extra=""
dd if=/dev/urandom of="$T/rr.img" bs=1048576 count=8 2>/dev/null
truncate -s 64M "$T/wr.img" 2>/dev/null || dd if=/dev/zero of="$T/wr.img" bs=1048576 count=0 seek=64 2>/dev/null
rm -rf "$T/dA" "$T/dB" "$T/dC" "$T/dM"
mkdir -p "$T/dA" "$T/dC"
vm_start dsnap run --kernel "$BZ" --initrd "$INITRD" --cmdline "$BASE visor.test=api" --cpus 2 \
	--memory 256M --disk "$T/rr.img,id=rr" --disk "$T/wr.img,id=wr" --track-dirty-pages \
	--api-sock "$SOCK"
wait_for '^API-READY' "$TMO" || why="the guest never got to its test (no API-READY)"
[ -n "$why" ] || g reread-start rr || true
[ -n "$why" ] || g load-start wr || true
# npass: the reader's passes so far (from its REREAD-PASS lines)
npass() { clast '^REREAD-PASS' | cut -d' ' -f2; }
# wait_more SECS: until the reader and the writer both moved on from $p0/$w0
wait_more() {
	_i=0
	while [ $_i -lt $(($1 * 2)) ]; do
		[ "$(npass)" -gt "${p0:-0}" ] 2>/dev/null &&
			[ "$(clast '^WRITER-PROGRESS' | cut -d' ' -f2)" -gt "${w0:-0}" ] 2>/dev/null && return 0
		alive || return 1
		sleep 0.5
		_i=$((_i + 1))
	done
	return 1
}
p0=0 w0=0
[ -n "$why" ] || wait_more 240 || why="the guest's reader or writer made no progress: $(clast 'REREAD-|WRITER-')"
if [ -z "$why" ]; then
	api PATCH /vm '{"state": "Paused"}'
	expect 204
fi
if [ -z "$why" ]; then
	api PUT /snapshot/create "{\"snapshot_path\": \"$T/dA/state\", \"mem_file_path\": \"$T/dA/memory\"}"
	expect 204
	p0=$(npass) w0=$(clast '^WRITER-PROGRESS' | cut -d' ' -f2)
fi
if [ -z "$why" ]; then
	api PATCH /vm '{"state": "Resumed"}'
	expect 204
fi
# disk I/O between A and B: the reader's passes, the writer's records and
# a readsum step (O_DIRECT reads into fresh buffers)
[ -n "$why" ] || wait_more 240 || why="no disk I/O after snapshot A: $(clast 'REREAD-|WRITER-')"
[ -n "$why" ] || g readsum rr 0 8 || true
[ -n "$why" ] || [ "$(echo "$gout" | sed -n 's/^READSUM rr 0 8 //p')" = "$(sha <"$T/rr.img")" ] ||
	why="the guest read different data from rr.img: $(echo "$gout" | tr '\n' ' ')"
if [ -z "$why" ]; then
	api PATCH /vm '{"state": "Paused"}'
	expect 204
fi
pB=""
if [ -z "$why" ]; then
	pB=$(npass)
	if ! "$VISOR" snapshot "$SOCK" "$T/dB" --diff >"$T/dsnap.cli" 2>&1; then
		why="visor snapshot --diff failed: $(cat "$T/dsnap.cli")"
	elif ! grep -q "Diff snapshot in" "$T/dsnap.cli"; then
		why="visor snapshot --diff did not write a Diff: $(cat "$T/dsnap.cli")"
	fi
fi
if [ -z "$why" ]; then
	api PUT /snapshot/create "{\"snapshot_path\": \"$T/dC/state\", \"mem_file_path\": \"$T/dC/memory\"}"
	expect 204
fi
if alive; then
	kill -9 "$vpid" 2>/dev/null
	wait "$vpid" 2>/dev/null
fi
vpid=""
exec 5>&-
bkb="" ckb=""
if [ -z "$why" ]; then
	bkb=$(du -k "$T/dB/memory" | cut -f1) ckb=$(du -k "$T/dC/memory" | cut -f1)
	cp -r "$T/dA" "$T/dM"
	if ! "$VISOR" snapshot merge "$T/dM" "$T/dB" >"$T/dsnap.merge" 2>&1; then
		why="visor snapshot merge failed: $(cat "$T/dsnap.merge")"
	elif ! cmp "$T/dM/memory" "$T/dC/memory" >"$T/dsnap.cmp" 2>&1; then
		why="A merged with the Diff B is not C's memory: $(head -n 1 "$T/dsnap.cmp")"
	fi
fi
loadms=""
if [ -z "$why" ]; then
	steps=$seq
	vm_start dsnap2 --api-sock "$T/dsnap2.sock" --id dsnap2
	seq=$steps
	SOCK="$T/dsnap2.sock"
	wait_sock "$SOCK" 60 || why="the API socket never appeared"
	t0=$(up_ms)
	[ -n "$why" ] || { api PUT /snapshot/load "{\"snapshot_path\": \"$T/dM/state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/dM/memory\"}, \"resume_vm\": true}"; expect 204; }
	loadms=$(($(up_ms) - t0))
fi
passes=""
if [ -z "$why" ]; then
	GT=600 g reread-stop || true
	passes=$(echo "$gout" | sed -n 's/^REREAD-DONE passes=\([0-9]*\) bad=0$/\1/p' | head -n 1)
	[ -n "$why" ] || [ -n "$passes" ] || why="the reader's check failed: $(echo "$gout" | tr '\n' ' ')"
	[ -n "$why" ] || [ "$passes" -ge "$pB" ] || why="the reader's passes went back: $passes after the load, $pB at the snapshot"
fi
nrec=""
if [ -z "$why" ]; then
	GT=600 g load-stop || true
	nrec=$(echo "$gout" | sed -n 's/^RECORDS-OK \([0-9]*\)$/\1/p')
	gsum=$(echo "$gout" | sed -n 's/^RECORDS-SUM [0-9]* //p')
	[ -n "$why" ] || [ -n "$nrec" ] || why="the guest's check of its records failed: $(echo "$gout" | grep -E 'RECORDS|WRITER' | tr '\n' ' ')"
	[ -n "$why" ] || [ "$(dd if="$T/wr.img" bs=65536 count="$nrec" 2>/dev/null | sha)" = "$gsum" ] ||
		why="the image file differs from what the guest read back ($nrec records)"
fi
if [ -z "$why" ]; then
	g poweroff || true
	why=""
	vm_wait 120 || why="the restored visor did not exit after the guest's poweroff"
	[ -n "$why" ] || [ "$vm_rc" = 0 ] || why="the restored visor exited with $vm_rc after poweroff"
fi
extra="$T/dsnap.cli $T/dsnap.merge"
report snapshot-diff-merge-under-disk-io "Diff ${bkb:-?} KiB, Full ${ckb:-?} KiB on disk; A + Diff == Full byte for byte; merged snapshot loaded in ${loadms:-?} ms, reader ${passes:-?} passes intact, $nrec records verified"
vm_end
extra=""
rm -rf "$T/dA" "$T/dB" "$T/dC" "$T/dM"

# =====================================================================================
# fc3: rate limiter, PATCH of the limiter and of the backing file
# =====================================================================================
vm=fc3
SOCK="$T/fc3.sock"
why=""
dd if=/dev/urandom of="$T/unl.img" bs=1048576 count=16 2>/dev/null
dd if=/dev/urandom of="$T/lim.img" bs=1048576 count=16 2>/dev/null
dd if=/dev/urandom of="$T/swap1.img" bs=1048576 count=4 2>/dev/null
dd if=/dev/urandom of="$T/swap2.img" bs=1048576 count=6 2>/dev/null
# (i8042 options of Firecracker's default command line, for the second
# Ctrl-Alt-Del test at the end)
FCARGS3="$FCARGS i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd"
vm_start fc3 --api-sock "$SOCK" --id fc3
wait_sock "$SOCK" 60 || why="the API socket never appeared"
[ -n "$why" ] || { api PUT /boot-source "{\"kernel_image_path\": \"$BZ\", \"initrd_path\": \"$INITRD\", \"boot_args\": \"$FCARGS3\"}"; expect 204; }
[ -n "$why" ] || { api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 256}'; expect 204; }
[ -n "$why" ] || { api PUT /drives/unl "{\"drive_id\": \"unl\", \"path_on_host\": \"$T/unl.img\", \"is_root_device\": false, \"is_read_only\": false}"; expect 204; }
[ -n "$why" ] || { api PUT /drives/lim "{\"drive_id\": \"lim\", \"path_on_host\": \"$T/lim.img\", \"is_root_device\": false, \"is_read_only\": false, \"rate_limiter\": {\"bandwidth\": {\"size\": 1048576, \"refill_time\": 1000}}}"; expect 204; }
[ -n "$why" ] || { api PUT /drives/swap "{\"drive_id\": \"swap\", \"path_on_host\": \"$T/swap1.img\", \"is_root_device\": false, \"is_read_only\": false}"; expect 204; }
[ -n "$why" ] || { api PUT /actions '{"action_type": "InstanceStart"}'; expect 204; }
[ -n "$why" ] || wait_for '^API-READY' "$TMO" || why="the guest never got to its test (no API-READY)"
fc3_up=0
[ -n "$why" ] || fc3_up=1
[ -n "$why" ] || g info || true
[ -n "$why" ] || [ "$(echo "$gout" | grep -c '^DISK=')" = 3 ] || why="the guest sees $(echo "$gout" | grep -c '^DISK=') disks, expected 3: $(echo "$gout" | grep '^DISK' | tr '\n' ' ')"
# 4 MiB of the unlimited drive, then (after 1 MiB that empties the bucket)
# 4 MiB of the limited one: 1 MiB/s means about 4 s
ms_unl="" ms_lim=""
if [ -z "$why" ] && GT=300 g rltest lim unl; then
	ms_unl=$(echo "$gout" | sed -n 's/^TIMED unl ms=//p')
	ms_lim=$(echo "$gout" | sed -n 's/^TIMED lim ms=//p')
	if [ -z "$ms_unl" ] || [ -z "$ms_lim" ]; then
		why="no timings from the guest: $(echo "$gout" | tr '\n' '|')"
	elif [ "$ms_lim" -lt 3000 ] || [ "$ms_lim" -lt $((3 * ms_unl)) ]; then
		why="4 MiB took $ms_lim ms on the limited drive (1 MiB/s) and $ms_unl ms on the unlimited one: expected at least 3000 ms and 3x"
	elif [ "$ms_lim" -gt $((8000 + 2 * ms_unl)) ]; then
		why="4 MiB took $ms_lim ms on the limited drive (1 MiB/s), more than 8 s + 2x the unlimited drive's $ms_unl ms"
	fi
fi
report rate-limiter "4 MiB O_DIRECT: limited $ms_lim ms, unlimited $ms_unl ms"
# PATCH the limiter away (Firecracker: a bucket of size 0 is no limit)
why=""
ms_lim2=""
if [ $fc3_up = 1 ]; then
	api PATCH /drives/lim '{"drive_id": "lim", "rate_limiter": {"bandwidth": {"size": 0, "refill_time": 0}}}'
	expect 204
	if [ -z "$why" ] && g timed lim 20 16; then
		ms_lim2=$(echo "$gout" | sed -n 's/^TIMED lim ms=//p')
		if [ -z "$ms_lim2" ]; then
			why="no timing from the guest: $(echo "$gout" | tr '\n' '|')"
		elif [ "$ms_lim2" -ge 3000 ] || [ $((3 * ms_lim2)) -gt "${ms_lim:-0}" ]; then
			why="after PATCH to no limit the next 4 MiB took $ms_lim2 ms (limited: ${ms_lim:-?} ms, unlimited drive: ${ms_unl:-?} ms)"
		fi
	fi
	report rate-limiter-patch "next 4 MiB in $ms_lim2 ms after PATCH (limited ${ms_lim:-?} ms)"
else
	bad rate-limiter-patch "the VM did not start"
fi
# PATCH path_on_host: the guest sees the new size and reads the new content
why=""
if [ $fc3_up = 1 ]; then
	g readsum swap 0 4 || true
	[ -n "$why" ] || [ "$(echo "$gout" | sed -n 's/^READSUM swap 0 4 //p')" = "$(sha <"$T/swap1.img")" ] ||
		why="before the PATCH the guest read different data from swap1.img"
	[ -n "$why" ] || { api PATCH /drives/swap "{\"drive_id\": \"swap\", \"path_on_host\": \"$T/swap2.img\"}"; expect 204; }
	[ -n "$why" ] || GT=150 g waitsize swap 8192 120 || true
	newsize=$(echo "$gout" | sed -n 's/^SIZE swap //p')
	[ -n "$why" ] || [ "$newsize" = 12288 ] || why="the guest sees ${newsize:-?} sectors after the PATCH, expected 12288 (6 MiB)"
	[ -n "$why" ] || g readsum swap 0 6 || true
	[ -n "$why" ] || [ "$(echo "$gout" | sed -n 's/^READSUM swap 0 6 //p')" = "$(sha <"$T/swap2.img")" ] ||
		why="after the PATCH the guest read different data than swap2.img"
	if [ -z "$why" ]; then
		api GET /vm/config
		echo "$resp" | grep -q "swap2.img" || why="GET /vm/config does not show the new path: $resp"
	fi
	report drive-path-patch "guest sees 8192 -> $newsize sectors and reads all 6 MiB of the new file; /vm/config updated"
else
	bad drive-path-patch "the VM did not start"
fi
# SendCtrlAltDel again, with the i8042 options Firecracker documents (and
# puts on its default command line) to skip the keyboard probe
why=""
if [ $fc3_up = 1 ] && alive; then
	g cad || true
	[ -n "$why" ] || wait_for '^CAD-ARMED' 30 || why="the guest could not arm its Ctrl-Alt-Del handler: $(cline '^CAD-')"
	[ -n "$why" ] || { api PUT /actions '{"action_type": "SendCtrlAltDel"}'; expect 204; }
	[ -n "$why" ] || cad_check 60
	report ctrl-alt-del-dumbkbd "boot_args with i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd: 204; guest rebooted; visor exit status $vm_rc"
else
	bad ctrl-alt-del-dumbkbd "the VM did not start or ended early"
fi
vm_end
finish
