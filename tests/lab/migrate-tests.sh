#!/bin/sh
# Linux-guest tests of live migration (issue 11) across two "hosts": the
# network namespaces of tests/lab/mighosts.sh (hostA and hostB, each with
# a bridge and a tap for the VM, joined through a switch namespace that
# learns ports, and a peer the guest talks to).  Runs inside the lab's L1
# (busybox sh) or directly on a host with VT-x/AMD-V, as root.
#
#   tests/lab/migrate-tests.sh DIR    (DIR as for guest-tests.sh; the lab
#                                      tools in DIR/lab-tools, the bridge and
#                                      veth modules in DIR/lab-modules where the
#                                      kernel lacks them: tests/lab/mig-stage DIR)
#
# The guest is the appliance with visor.test=mig (tests/guest/mig.sh, a
# command loop on its console; tests/lab/migvm.sh drives it across VMM
# processes).  Its work while it moves: a ticker (api-tool ticker: TICK n
# lines every 100 ms, the counter), numbered records appended to a file on
# its virtio disk with an fsync each (tests/guest/reclog.c), a TCP
# connection to the peer with a message every 10 ms, each echoed
# (tcp-tool hold / serve: the connection is never re-made), and gapmeter
# (the guest's clock in a tight loop, with the peer's UDP time server as
# an outside clock).
#
# harness tests (run now, without migration):
#   two-hosts              the wiring: each host and the peer reach the others
#   harness-measures-a-pause   a visor guest on hostA with all of the above;
#                          the VM is paused for 2 s (the stand-in for a
#                          migration's switch-over) and every instrument has
#                          to see it: gapmeter (gap plus clock lost against
#                          the peer covers the pause), the peer's pings (the
#                          longest outage or delay), the TCP holder's peer
#                          (the longest silence); afterwards the counter is
#                          contiguous, the TCP connection carried every
#                          message once, the records check (and the checker
#                          catches a doubled and a lost record), and the
#                          switch saw the guest on hostA's port
# migration tests (SKIP with the reason while `visor migrate --help` fails):
#   migrate-precopy        hostA -> hostB with the guest busy (visor run
#                          --incoming tcp:10.77.0.2:PORT on hostB, `visor
#                          migrate VM --to URL --verify` on hostA: every page
#                          checked against the source's): the source exits 0,
#                          the guest answers on the destination's console,
#                          the counter goes on without a lost or doubled tick
#                          and its step across the move is within the
#                          measured downtime (plus the counter's own largest
#                          step before), the switch learned port B, the TCP
#                          connection carries on, no record lost or doubled
#   migrate-postcopy       the same with --postcopy
#   migrate-local          the same with --mode local (unix: URL, one host; the
#                          source runs with --mem-shared)
#   migrate-tls            migrate-precopy over mutual TLS (lab-tools/mig-certs)
#   migrate-cancel         `visor migrate --cancel` in mid-flight: visor migrate
#                          says so and exits non-zero, the destination exits
#                          non-zero having run nothing, the source keeps
#                          running with nothing lost
#   migrate-kill-destination   the destination killed in mid-flight: the
#                          source keeps running, nothing lost
#   migrate-back-and-forth A -> B -> A ... ten moves, each with --verify; every
#                          check after each
#
# MIGTESTS="NAME..." runs only those migration tests (the others SKIP);
# MIGTESTS_TRACE=1 prints every guest step and visor migrate's output as
# they happen ("trace: ..."), to follow a lab session live.
#
# Ends with "migrate: N passed, N failed, N skipped".
set -u
DIR=${1:-.}
# shellcheck source=tests/lab/lib.sh
. "$(dirname "$0")/lib.sh"

skipped=0
# set by the instruments; empty until they report (a failure before then
# still reports, with set -u)
hold_line="" nrec="" gap_line="" port="" gap_ms="" lost_ms="" err_ms="" ping_ms="" silence_ms=""
ok() { echo "PASS $1${2:+ ($2)}"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
skip() { echo "SKIP $1: $2"; skipped=$((skipped + 1)); }
finish() {
	cleanup
	echo "migrate: $pass passed, $fail failed, $skipped skipped"
	[ "$fail" = 0 ]
	exit
}

TCP="$DIR/lab-tools/tcp-tool"
MIGTESTS=${MIGTESTS:-}
[ "${MIGTESTS_TRACE:-0}" = 1 ] && MV_TRACE=1
trace() { [ -z "${MV_TRACE:-}" ] || echo "trace: $(cut -d' ' -f1 /proc/uptime) s: $*"; }
# want NAME: NAME is to run (in MIGTESTS, or MIGTESTS unset); else SKIP
want() {
	case " ${MIGTESTS:-$1} " in *" $1 "*) return 0 ;; esac
	skip "$1" "not in MIGTESTS"
	return 1
}
MV_DIR=$T
MIG_DIR=$T/hosts
MIG_MODDIR=$DIR/lab-modules
# shellcheck source=tests/lab/mighosts.sh
. "$(dirname "$0")/mighosts.sh"
# shellcheck source=tests/lab/migvm.sh
. "$(dirname "$0")/migvm.sh"
MIGPORT=4444
TSPORT=7777
HOLDPORT=5555
CMDLINE="$BASE visor.test=mig"
MEM=256M
SLOTS="vm0 vm1 vm2"

helpers=""
cleanup() {
	for _s in $SLOTS; do mv_stop "$_s"; done
	for _p in $helpers; do
		kill "$_p" 2>/dev/null
		wait "$_p" 2>/dev/null
	done
	helpers=""
	mighosts_down
	rm -rf "$T"
}
trap 'cleanup' EXIT
trap 'cleanup; exit 1' INT TERM

up_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
kv() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
# ms_of LINE KEY: KEY's value (us) in ms, or ? when LINE does not have it
ms_of() {
	_v=$(kv "$1" "$2")
	case "$_v" in '' | *[!0-9-]*) echo "?" ;; *) echo $((_v / 1000)) ;; esac
}
setwhy() { [ -n "$why" ] || why=$1; }

# report NAME NOTE: PASS, or FAIL with $why and the evidence
report() {
	if [ -z "$why" ]; then
		ok "$1" "$2"
		return
	fi
	bad "$1" "$why"
	for _s in $SLOTS; do
		[ -s "$T/$_s.out" ] || [ -s "$T/$_s.err" ] || continue
		echo "    --- $_s: visor stderr (last 10 lines)"
		tail -n 10 "$T/$_s.err" | sed 's/^/    | /'
		echo "    --- $_s: console (last 15 lines without TICK lines)"
		mv_con "$_s" | grep -v '^TICK ' | tail -n 15 | sed 's/^/    | /'
		# a guest kernel's report (its first lines scroll out of the tail)
		_k=$(mv_con "$_s" | grep -n -m1 -E 'BUG:|Oops|PANIC:|Kernel panic|double fault|general protection fault|invalid opcode' |
			cut -d: -f1)
		if [ -n "$_k" ]; then
			echo "    --- $_s: console from its kernel's first report (line $_k, 40 lines)"
			mv_con "$_s" | sed -n "${_k},$((_k + 39))p" | sed 's/^/    | /'
		fi
	done
	for _f in $T/serve.out $T/ping.out $T/migrate.out; do
		[ -s "$_f" ] || continue
		echo "    --- ${_f##*/} (last 5 lines)"
		tail -n 5 "$_f" | sed 's/^/    | /'
	done
}

if [ ! -x "$TCP" ]; then
	bad setup "$TCP is missing (make lab-tools)"
	finish
fi

# =====================================================================================
# two-hosts: the wiring itself
# =====================================================================================
why=""
hosts_up=0
# (the two hosts are network namespaces with bridges and taps: root only;
# make test runs this suite by default, so a non-root run skips it)
if [ "$(id -u)" != 0 ]; then
	skip migrate "needs root (network namespaces, bridges, taps)"
	finish
fi
if ! mighosts_up 2>"$T/hosts.err"; then
	why="mighosts_up failed: $(tr '\n' ' ' <"$T/hosts.err")"
elif ! mighosts_check >"$T/hosts.out" 2>&1; then
	why="the hosts do not reach each other: $(grep FAILED "$T/hosts.out" | tr '\n' ' ')"
else
	hosts_up=1
fi
report two-hosts "hostA $MIG_ADDR_A, hostB $MIG_ADDR_B and the peer $MIG_PEER reach each other through the switch"
[ $hosts_up = 1 ] || finish

# the peer's services for the rest of the suite: the UDP time server
$(mighosts_nsenter peer) "$TCP" timesrv "$TSPORT" >"$T/timesrv.out" 2>&1 &
helpers="$helpers $!"

# --- a guest on a host, and its instruments ----------------------------------------
# boot SLOT FD HOST DISK SOCK [OPTIONS...]: visor run on HOST with the
# guest's tap and disk (and more visor run OPTIONS)
boot() {
	_bs=$1 _bfd=$2 _bh=$3 _bd=$4 _bk=$5
	shift 5
	rm -f "$_bk"
	trace "boot $_bs on host$_bh $*"
	mv_start "$_bs" "$_bfd" "$_bh" "$VISOR" run --kernel "$BZ" --initrd "$INITRD" --cmdline "$CMDLINE" \
		--memory "$MEM" --net "tap=$MIG_TAP,mac=$MIG_GUEST_MAC" --disk "$_bd,id=rec" \
		--api-sock "$_bk" --id "$_bs" "$@" || return 1
	mv_console "$_bs"
	mv_wait "$_bs" '^MIG-READY' "$TMO"
}

# start_work: on the current console: network, then every instrument;
# the peer's TCP end first.  Sets why on failure.
serve_pid=""
start_work() {
	$(mighosts_nsenter peer) "$TCP" serve "$HOLDPORT" >"$T/serve.out" 2>&1 &
	serve_pid=$!
	helpers="$helpers $serve_pid"
	g net "$MIG_GUEST/24" "$MIG_PEER" || { setwhy "$gwhy"; return; }
	g hold-start "$MIG_PEER" "$HOLDPORT" || { setwhy "$gwhy"; return; }
	g rec-start rec || { setwhy "$gwhy"; return; }
	g gap-start "$MIG_PEER:$TSPORT" || { setwhy "$gwhy"; return; }
	g ticker-start || setwhy "$gwhy"
}

# ticks SLOT...: the TICK lines of these consoles in order ("n ms" each;
# "hist" is the history of every hop of migrate-back-and-forth)
ticks() {
	for _s in "$@"; do mv_con "$_s"; done | sed -n 's/^TICK \([0-9]*\) \([0-9]*\)$/\1 \2/p'
}
# tick_check SLOT...: the counter over these consoles is 1, 2, 3, ... with
# its clock never going back; prints "last maxstep" (false with why)
tick_check() {
	_r=$(ticks "$@" | awk '
		NR == 1 && $1 != 1 { bad = "starts at " $1 }
		NR > 1 && $1 != prev + 1 && bad == "" { bad = "goes from " prev " to " $1 }
		NR > 1 && $2 < pms && bad == "" { bad = "its clock goes back at " $1 }
		NR > 1 && $2 - pms > step { step = $2 - pms; at = $1 }
		{ prev = $1; pms = $2 }
		END { if (NR == 0) bad = "has no ticks"; printf "%s %d %d %d|%s\n", prev, step, at, NR, bad }')
	case "$_r" in
	*"|") echo "${_r%|}"; return 0 ;;
	*) setwhy "the counter ${_r#*|}"; return 1 ;;
	esac
}

# stop_work: stop the instruments on the current console and check their
# results; sets why, gap_line, nrec, hold_line, serve_line
stop_work() {
	gap_line="" nrec="" hold_line="" serve_line=""
	g ticker-stop || setwhy "$gwhy"
	if g gap-stop; then
		gap_line=$(gval 'GAP ')
		[ "$(kv "$gap_line" mono_back)" = 0 ] || setwhy "the guest's CLOCK_MONOTONIC went back: $gap_line"
	else
		setwhy "$gwhy"
	fi
	if g hold-stop; then
		hold_line=$(gval 'HOLD-DONE ')
	else
		setwhy "the TCP connection did not survive: $(echo "$gout" | grep HOLD | tr '\n' ' ')"
	fi
	_i=0
	while kill -0 "$serve_pid" 2>/dev/null && [ $_i -lt 100 ]; do sleep 0.2; _i=$((_i + 1)); done
	serve_line=$(sed -n 's/^SERVE-DONE //p' "$T/serve.out")
	if [ -z "$serve_line" ]; then
		setwhy "the peer's end did not finish cleanly: $(grep -v PROGRESS "$T/serve.out" | tr '\n' ' ')"
	elif [ -n "$hold_line" ] && [ "$(kv "$serve_line" msgs)" != "$(kv "$hold_line" sent)" ]; then
		setwhy "the peer got $(kv "$serve_line" msgs) messages, the guest sent $(kv "$hold_line" sent)"
	elif [ "$(kv "$serve_line" bad)" != 0 ]; then
		setwhy "the peer saw messages out of sequence: $serve_line"
	fi
	if GT=600 g rec-stop; then
		nrec=$(gval 'RECLOG-OK ')
	else
		setwhy "records: $(echo "$gout" | grep RECLOG | tr '\n' ' ')"
	fi
}

# =====================================================================================
# harness-measures-a-pause: everything the migration tests rely on, with a
# visor guest on hostA and a 2 s pause standing in for a switch-over
# =====================================================================================
why=""
truncate -s 256M "$T/rec.img"
boot vm0 5 A "$T/rec.img" "$T/vm0.sock" || why="the guest did not boot on hostA (no MIG-READY)"
[ -n "$why" ] || start_work
port=""
if [ -z "$why" ]; then
	port=$(mighosts_port "$MIG_GUEST_MAC")
	[ "$port" = A ] || why="the switch has the guest's MAC on port '$port', expected A (hostA's wire)"
fi
# the instruments run for a while, then a new gapmeter window and pings
if [ -z "$why" ]; then
	sleep 2
	g gap-reset || setwhy "$gwhy"
	g rec-status || setwhy "$gwhy"
	rec0=$(gval 'RECLOG-COUNT ')
	$(mighosts_nsenter peer) "$TCP" ping "$MIG_GUEST" 10000 >"$T/ping.out" 2>&1 &
	ping_pid=$!
	sleep 2
fi
inner=0 outer=0
if [ -z "$why" ]; then
	t0=$(up_ms)
	"$VISOR" pause "$T/vm0.sock" >"$T/pause.out" 2>&1 || setwhy "visor pause failed: $(cat "$T/pause.out")"
	t1=$(up_ms)
	sleep 2
	t2=$(up_ms)
	"$VISOR" resume "$T/vm0.sock" >"$T/pause.out" 2>&1 || setwhy "visor resume failed: $(cat "$T/pause.out")"
	t3=$(up_ms)
	# the VM stood still at least from the pause's answer to the resume
	# request, at most from the pause request to the resume's answer
	inner=$((t2 - t1)) outer=$((t3 - t0))
	sleep 2
	kill "$ping_pid" 2>/dev/null
	wait "$ping_pid" 2>/dev/null
fi
gap_ms="" lost_ms="" err_ms="" seen_ms="" ping_ms="" silence_ms=""
if [ -z "$why" ]; then
	g gap-report || setwhy "$gwhy"
	gl=$(gval 'GAP ')
	gap_ms=$(ms_of "$gl" mono_max_us) lost_ms=$(ms_of "$gl" ref_lost_us) err_ms=$(ms_of "$gl" ref_err_us)
	if [ -n "$why" ]; then
		:
	elif [ "$gap_ms" = "?" ] || [ "$lost_ms" = "?" ] || [ "$err_ms" = "?" ]; then
		setwhy "gapmeter's report lacks a value: $gl"
	else
		err_ms=$((err_ms + 1))
		[ "$lost_ms" -gt 0 ] && seen_ms=$((gap_ms + lost_ms)) || seen_ms=$gap_ms
	fi
	if [ -n "$why" ]; then
		:
	elif [ "$(kv "$gl" ref_replies)" -lt 1 ] 2>/dev/null; then
		setwhy "gapmeter got no answer from the peer's time server: $gl"
	elif [ $((seen_ms + err_ms)) -lt "$inner" ]; then
		setwhy "gapmeter did not see the pause: largest gap $gap_ms ms + clock lost $lost_ms ms (+-$err_ms) < the $inner ms the VM stood still: $gl"
	elif [ "$lost_ms" -gt $((outer + err_ms)) ]; then
		setwhy "the guest's clock lost $lost_ms ms (+-$err_ms) in a pause of at most $outer ms: $gl"
	fi
	pl=$(grep '^PING ' "$T/ping.out")
	# a paused VM's pings wait in the tap's queue: a long delay, or lost
	run=$(kv "$pl" maxrun_ms) rtt=$(ms_of "$pl" rtt_max_us)
	ping_ms=${run:-0}
	[ "$rtt" != "?" ] && [ "$rtt" -gt "$ping_ms" ] && ping_ms=$rtt
	[ -n "$pl" ] || setwhy "the pinger printed no result: $(cat "$T/ping.out")"
	[ "$ping_ms" -ge $((inner - 10)) ] || setwhy "the pings did not see the pause: longest outage ${run} ms, longest delay ${rtt} ms < $inner ms: $pl"
	g rec-status || setwhy "$gwhy"
	rec1=$(gval 'RECLOG-COUNT ')
	[ "${rec1:-0}" -gt "${rec0:-0}" ] || setwhy "the records did not go on after the pause ($rec0 -> $rec1)"
	silence_ms=$(sed -n 's/^SERVE-PROGRESS .*maxgap_ms=\([0-9]*\)$/\1/p' "$T/serve.out" | tail -n 1)
	[ "${silence_ms:-0}" -ge $((inner - 10)) ] || setwhy "the peer's TCP end did not see the pause: longest silence ${silence_ms:-?} ms < $inner ms"
fi
tk=""
if [ -z "$why" ]; then
	stop_work
	tk=$(tick_check vm0) || true
fi
if [ -z "$why" ]; then
	g rec-selftest || setwhy "the record checker missed a doubled or a lost record: $(echo "$gout" | tr '\n' ' ')"
fi
report harness-measures-a-pause "pause of $inner-$outer ms: guest gap $gap_ms ms + clock lost $lost_ms ms (+-$err_ms); pings: outage/delay $ping_ms ms; TCP peer silence $silence_ms ms; counter 1..${tk%% *} contiguous; TCP: $(kv "$hold_line" sent) messages each echoed once; $nrec records OK, checker catches doubled/lost; switch port $port"
if mv_alive vm0; then
	g poweroff || true
	mv_exit vm0 60 || true
fi
mv_stop vm0
mv_cur=""

# =====================================================================================
# migration (issue 11): skipped while visor has no `migrate`
# =====================================================================================
"$VISOR" migrate --help >"$T/mhelp" 2>&1
have_mig=$?
MIGWHY="visor has no live migration yet (\`visor migrate --help\` exits $have_mig: $(head -n 1 "$T/mhelp"))"

# other A|B: the other host
other() { if [ "$1" = A ]; then echo B; else echo A; fi; }
addr_of() { if [ "$1" = A ]; then echo "$MIG_ADDR_A"; else echo "$MIG_ADDR_B"; fi; }

# migrate_once FROM_SLOT FROM_HOST TO_SLOT TO_FD TO_HOST URL [FLAGS...]:
# start `visor run --incoming URL $MIG_DST_OPTS` on TO_HOST, `visor migrate` the VM of
# FROM_SLOT to it (from FROM_HOST), check the switch-over; the console
# becomes TO_SLOT's.  Sets why, mig_ms (the command's wall time),
# downtime_ms (visor's own summary)
migrate_once() {
	_fs=$1 _fh=$2 _ts=$3 _tfd=$4 _th=$5 _url=$6
	shift 6
	mig_ms="" downtime_ms=""
	rm -f "$T/$_ts.sock"
	# shellcheck disable=SC2086
	mv_start "$_ts" "$_tfd" "$_th" "$VISOR" run --incoming "$_url" --api-sock "$T/$_ts.sock" --id "$_ts" \
		${MIG_DST_OPTS:-} || { setwhy "cannot start the destination"; return; }
	_i=0
	while [ ! -S "$T/$_ts.sock" ] && [ $_i -lt 100 ] && mv_alive "$_ts"; do sleep 0.2; _i=$((_i + 1)); done
	[ -S "$T/$_ts.sock" ] || { setwhy "the destination's API socket never appeared"; return; }
	# (a destination listens on URL once it serves its API: assumed, and a
	# second of slack; probing the port would hand it a bogus stream)
	sleep 1
	_t0=$(up_ms)
	trace "visor migrate $_fs ($_fh) -> $_ts ($_th) $_url $*"
	if [ -n "${MV_TRACE:-}" ]; then
		# shellcheck disable=SC2046
		{
			$(mighosts_nsenter "$_fh") "$VISOR" migrate "$T/$_fs.sock" --to "$_url" "$@" 2>&1
			echo $? >"$T/migrate.rc"
		} | tee "$T/migrate.out" | sed 's/^/trace: migrate: /'
		_rc=$(cat "$T/migrate.rc")
	else
		# shellcheck disable=SC2046
		$(mighosts_nsenter "$_fh") "$VISOR" migrate "$T/$_fs.sock" --to "$_url" "$@" >"$T/migrate.out" 2>&1
		_rc=$?
	fi
	mig_ms=$(($(up_ms) - _t0))
	trace "visor migrate exited $_rc after $mig_ms ms"
	downtime_ms=$(tr '\r' '\n' <"$T/migrate.out" | sed -n 's/.*downtime[^0-9]*\([0-9][0-9.]*\) *ms.*/\1/p' | tail -n 1)
	[ "$_rc" = 0 ] || { setwhy "visor migrate exited $_rc: $(tail -n 3 "$T/migrate.out" | tr '\n' ' ')"; return; }
	mv_exit "$_fs" 60 || { setwhy "the source still runs 60 s after the migration"; return; }
	[ "$mv_rc" = 0 ] || setwhy "the source exited $mv_rc after the migration, expected 0"
	mv_stop "$_fs"
	mv_alive "$_ts" || { setwhy "the destination is not running"; return; }
	mv_console "$_ts"
	g mono || { setwhy "the guest does not answer on the destination's console: $gwhy"; return; }
	g ping "$MIG_PEER" 3 || setwhy "the guest's network does not work after the move: $gwhy"
	# the TCP connection carries on: echoes come back after the move
	g hold-status || setwhy "the TCP connection broke in the move: $gwhy"
	_e0=$(kv "$(gval 'HOLD-PROGRESS ')" echoed) _e1=$_e0 _i=0
	while [ -z "$why" ] && [ "${_e1:-0}" -le "${_e0:-0}" ] && [ $_i -lt 30 ]; do
		sleep 1
		g hold-status || setwhy "the TCP connection broke in the move: $gwhy"
		_e1=$(kv "$(gval 'HOLD-PROGRESS ')" echoed)
		_i=$((_i + 1))
	done
	[ "${_e1:-0}" -gt "${_e0:-0}" ] || setwhy "no TCP echo came back in 30 s after the move (echoed: ${_e0:-?})"
	g rec-status || setwhy "the records stopped in the move: $gwhy"
	_p=$(mighosts_port "$MIG_GUEST_MAC")
	[ "$_p" = "$_th" ] || [ "$_th" = "$_fh" ] || setwhy "after the move the switch has the guest on port '$_p', expected $_th"
}

# tick_step_across SLOT_BEFORE SLOT_AFTER: the counter's step from the
# last tick on the first console to the first on the second ("ms"), and
# its largest step before (the counter's own jitter)
tick_step_across() {
	_a=$(ticks "$1" | tail -n 1) _b=$(ticks "$2" | head -n 1)
	[ -n "$_a" ] && [ -n "$_b" ] || return 1
	_j=$(ticks "$1" | awk 'NR > 1 && $2 - p > m { m = $2 - p } { p = $2 } END { print m + 0 }')
	echo "$((${_b#* } - ${_a#* })) $_j"
}

# migration_test NAME FLAGS...: boot on hostA, work, migrate to hostB
migration_test() {
	_name=$1
	shift
	why=""
	_url="tcp:$MIG_ADDR_B:$MIGPORT" _to=B _bopt=""
	# (local mode hands guest memory over: it has to be in a memfd)
	case " $* " in *" --mode local "*) _url="unix:$T/local-mig.sock" _to=A _bopt=--mem-shared ;; esac
	truncate -s 256M "$T/rec.img"
	# shellcheck disable=SC2086
	boot vm0 5 A "$T/rec.img" "$T/vm0.sock" $_bopt || setwhy "the guest did not boot on hostA (no MIG-READY)"
	[ -n "$why" ] || start_work
	[ -n "$why" ] || sleep 3
	[ -n "$why" ] || migrate_once vm0 A vm1 6 "$_to" "$_url" "$@"
	step="" jit="" tk="" gap_line="" hold_line="" nrec=""
	if [ -z "$why" ]; then
		sleep 2 # ticks on the destination
		tk=$(tick_check vm0 vm1) || true
		_s=$(tick_step_across vm0 vm1) || setwhy "no counter ticks on one side of the move"
		step=${_s% *} jit=${_s#* }
		# everything else first: the TCP connection, the records, gapmeter
		stop_work
		if [ -n "$why" ]; then
			:
		elif [ -z "$downtime_ms" ]; then
			setwhy "visor migrate printed no measured downtime ('downtime ... ms'): $(tail -n 2 "$T/migrate.out" | tr '\n' ' ')"
		fi
		# The step across the move against visor's downtime (plus the
		# counter's own largest step) is reported, not judged: on the
		# lab's one emulated CPU both VMMs and L1 compete, so wall-time
		# comparisons are noise there (no timing thresholds in tests);
		# a lost or doubled tick is judged (tick_check, below).
		note=""
		[ -z "$why" ] && [ "$step" -gt $((${downtime_ms%.*} + jit)) ] &&
			note="; over downtime + jitter (${downtime_ms} + ${jit} ms)"
	fi
	report "$_name" "moved in $mig_ms ms (lab time), downtime $downtime_ms ms by visor's account, guest gap $(ms_of "$gap_line" mono_max_us) ms + clock lost $(ms_of "$gap_line" ref_lost_us) ms; counter 1..${tk%% *} contiguous, step across $step ms${note:-}; TCP $(kv "$hold_line" sent) messages each echoed once; $nrec records OK; switch port $_to"
	for _s in vm0 vm1; do mv_stop "$_s"; done
	mv_cur=""
}

if [ "$have_mig" != 0 ]; then
	for n in migrate-precopy migrate-postcopy migrate-local migrate-tls migrate-cancel migrate-kill-destination migrate-back-and-forth; do
		skip "$n" "$MIGWHY"
	done
	finish
fi

want migrate-precopy && migration_test migrate-precopy --verify
want migrate-postcopy && migration_test migrate-postcopy --postcopy
want migrate-local && migration_test migrate-local --mode local

# --- TLS: the same move over mutual TLS (lab-tools/mig-certs: a CA, the
# destination's certificate for dest.test, the source's) -----------------------------
tls_test() {
	why=""
	if [ ! -x "$DIR/lab-tools/mig-certs" ]; then
		bad migrate-tls "no $DIR/lab-tools/mig-certs (make lab-tools)"
		return
	fi
	mkdir -p "$T/pki"
	if ! "$DIR/lab-tools/mig-certs" "$T/pki" >"$T/pki/out" 2>&1; then
		bad migrate-tls "mig-certs failed: $(cat "$T/pki/out")"
		return
	fi
	MIG_DST_OPTS="--tls-cert $T/pki/dst.pem --tls-key $T/pki/dst.key --tls-ca $T/pki/ca.pem"
	migration_test migrate-tls --tls-cert "$T/pki/src.pem" --tls-key "$T/pki/src.key" \
		--tls-ca "$T/pki/ca.pem" --tls-server-name dest.test
	MIG_DST_OPTS=""
}
want migrate-tls && tls_test


# --- interrupted in mid-flight: the source runs on with nothing lost ----------------
# interrupted_test NAME cancel|kill: `visor migrate --cancel` (visor migrate
# says so, the destination exits non-zero having run nothing), or kill -9
# of the destination
interrupted_test() {
	name=$1 how=$2
	why=""
	truncate -s 256M "$T/rec.img"
	boot vm0 5 A "$T/rec.img" "$T/vm0.sock" || setwhy "the guest did not boot on hostA (no MIG-READY)"
	[ -n "$why" ] || start_work
	mrc="" drc="" at=""
	if [ -z "$why" ]; then
		rm -f "$T/vm1.sock"
		mv_start vm1 6 B "$VISOR" run --incoming "tcp:$MIG_ADDR_B:$MIGPORT" --api-sock "$T/vm1.sock" --id vm1
		sleep 2
		# (8 MiB/s: a 256 MiB guest takes tens of seconds; a second in is
		# mid-flight)
		$(mighosts_nsenter A) "$VISOR" migrate "$T/vm0.sock" --to "tcp:$MIG_ADDR_B:$MIGPORT" \
			--bandwidth 8 >"$T/migrate.out" 2>&1 &
		mpid=$!
		sleep 1
		if [ "$how" = cancel ]; then
			"$VISOR" migrate "$T/vm0.sock" --status >"$T/status.out" 2>&1
			at=" ($(grep -o 'pass [0-9]*' "$T/status.out" | head -n 1))"
			"$VISOR" migrate "$T/vm0.sock" --cancel >"$T/cancel.out" 2>&1 ||
				setwhy "visor migrate --cancel failed: $(tr '\n' ' ' <"$T/cancel.out")"
		else
			kill -9 "$(cat "$T/vm1.pid")" 2>/dev/null
			mv_stop vm1
		fi
		i=0
		while kill -0 "$mpid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
		if kill -0 "$mpid" 2>/dev/null; then
			setwhy "visor migrate still runs 60 s after the $how"
			kill "$mpid"
		fi
		wait "$mpid"
		mrc=$?
		[ "$mrc" != 0 ] || setwhy "visor migrate exited 0 after the $how: $(tail -n 2 "$T/migrate.out" | tr '\n' ' ')"
		if [ "$how" = cancel ]; then
			grep -qi cancel "$T/migrate.out" ||
				setwhy "visor migrate does not say it was cancelled: $(tail -n 2 "$T/migrate.out" | tr '\n' ' ')"
			# the destination gives up, having run nothing
			if mv_exit vm1 60; then
				drc=$mv_rc
				[ "$drc" != 0 ] || setwhy "the destination exited 0 after a cancelled migration"
			else
				setwhy "the destination still runs 60 s after the cancel"
			fi
			mv_con vm1 | grep -q -E '^(TICK|MIG-)' && setwhy "the destination ran the guest"
		fi
		mv_alive vm0 || setwhy "the source stopped after the $how"
		mv_console vm0
		[ -n "$why" ] || g mono || setwhy "the source's guest does not answer after the $how: $gwhy"
		[ -n "$why" ] || stop_work
	fi
	tk=""
	[ -n "$why" ] || tk=$(tick_check vm0) || true
	report "$name" "${how}ed ~1 s in$at; visor migrate exited ${mrc:-?}${drc:+, the destination $drc}; the source ran on: counter 1..${tk%% *}, TCP $(kv "$hold_line" sent) messages each echoed once, $nrec records OK"
	mv_stop vm0
	mv_stop vm1
	mv_cur=""
}
want migrate-cancel && interrupted_test migrate-cancel cancel

# --- back and forth ten times ---------------------------------------------------------
back_and_forth_test() {
	why=""
	truncate -s 256M "$T/rec.img"
	boot vm0 5 A "$T/rec.img" "$T/vm0.sock" || setwhy "the guest did not boot on hostA (no MIG-READY)"
	[ -n "$why" ] || start_work
	moves=0 cur=vm0 curh=A worst=""
	: >"$T/hist.out" # the consoles of every hop, in order (slots are reused)
	while [ -z "$why" ] && [ $moves -lt 10 ]; do
		sleep 2
		nh=$(other "$curh")
		if [ $((moves % 2)) = 0 ]; then ns=vm1 nfd=6; else ns=vm2 nfd=7; fi
		migrate_once "$cur" "$curh" "$ns" "$nfd" "$nh" "tcp:$(addr_of "$nh"):$MIGPORT" --verify
		[ -n "$why" ] && break
		cat "$T/$cur.out" >>"$T/hist.out"
		moves=$((moves + 1))
		worst="$worst ${downtime_ms:-?}"
		cur=$ns curh=$nh
	done
	[ -n "$why" ] || stop_work
	tk=""
	if [ -z "$why" ]; then
		cat "$T/$cur.out" >>"$T/hist.out"
		tk=$(tick_check hist) || true
	fi
	report migrate-back-and-forth "$moves moves A<->B, downtimes (visor's account, ms):$worst; counter 1..${tk%% *} contiguous over every hop; TCP $(kv "$hold_line" sent) messages each echoed once; $nrec records OK"
	for s in $SLOTS; do mv_stop "$s"; done
	mv_cur=""
}

want migrate-kill-destination && interrupted_test migrate-kill-destination kill
want migrate-back-and-forth && back_and_forth_test
finish
