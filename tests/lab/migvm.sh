# shellcheck shell=sh
# A guest driven through its serial console, across VMM processes (live
# migration, issue 11): sourced by tests/lab/migrate-tests.sh and
# bench/migrate after tests/lab/mighosts.sh.  The guest runs
# tests/guest/mig.sh (visor.test=mig), a command loop on its console; a
# migration moves it from one VMM process (its console) to another, and
# the next step goes to the new one.  Every VMM gets a slot: a console
# FIFO held open on a file descriptor of its own, its output and stderr.
#
#   MV_DIR                         scratch directory (set it before use)
#   mv_start SLOT FD HOST CMD...   start CMD in HOST's namespace (A or B, or "-"
#                                  for this one): console input from the FIFO
#                                  MV_DIR/SLOT.in held open on FD (3-9), output in
#                                  MV_DIR/SLOT.out, stderr in MV_DIR/SLOT.err; its
#                                  pid in MV_DIR/SLOT.pid
#   mv_console SLOT                the console the next steps go to
#   mv_alive SLOT                  the VMM still runs
#   mv_exit SLOT SECS              wait up to SECS for it to exit: true when it has,
#                                  its status in mv_rc
#   mv_stop SLOT                   TERM (KILL after 20 s) if it still runs; close its FD
#   mv_con SLOT                    its console output, without CRs
#   mv_wait SLOT REGEX SECS        until a console line matches (false early when
#                                  the VMM has exited)
#   g STEP ARGS...                 one step of mig.sh on the current console: true
#                                  when it reports rc=0; gout gets what it printed,
#                                  gwhy why it failed; GT bounds the wait (s, default 300)
#   gval PREFIX                    the rest of the first line of gout starting with PREFIX
#   MV_TRACE                       when set, every step is printed as it is sent
#                                  ("trace: ..."), to follow a lab session live

mv_seq=0
mv_cur=""
mv_rc=""
gout=""
gwhy=""

_mv_fd() { cat "$MV_DIR/$1.fd" 2>/dev/null; }

mv_start() {
	_s=$1 _fd=$2 _h=$3
	shift 3
	rm -f "$MV_DIR/$_s.in" "$MV_DIR/$_s.pid"
	mkfifo "$MV_DIR/$_s.in" || return 1
	: >"$MV_DIR/$_s.out"
	: >"$MV_DIR/$_s.err"
	_pre=""
	[ "$_h" = - ] || _pre=$(mighosts_nsenter "$_h") || return 1
	# (nsenter execs CMD: $! is the VMM)
	# shellcheck disable=SC2086
	$_pre "$@" <"$MV_DIR/$_s.in" >"$MV_DIR/$_s.out" 2>"$MV_DIR/$_s.err" &
	echo $! >"$MV_DIR/$_s.pid"
	echo "$_fd" >"$MV_DIR/$_s.fd"
	eval "exec $_fd>\"\$MV_DIR/\$_s.in\""
	[ -n "$mv_cur" ] || mv_cur=$_s
}

mv_console() { mv_cur=$1; }

mv_alive() {
	_p=$(cat "$MV_DIR/$1.pid" 2>/dev/null)
	[ -n "$_p" ] && kill -0 "$_p" 2>/dev/null
}

mv_exit() {
	_i=0
	while mv_alive "$1" && [ $_i -lt $(($2 * 10)) ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	mv_alive "$1" && return 1
	_p=$(cat "$MV_DIR/$1.pid" 2>/dev/null)
	[ -n "$_p" ] || return 1
	wait "$_p" 2>/dev/null
	# shellcheck disable=SC2034 # (for the caller)
	mv_rc=$?
	return 0
}

mv_stop() {
	_p=$(cat "$MV_DIR/$1.pid" 2>/dev/null)
	if [ -n "$_p" ] && kill -0 "$_p" 2>/dev/null; then
		kill "$_p" 2>/dev/null
		mv_exit "$1" 20 || { kill -9 "$_p" 2>/dev/null; wait "$_p" 2>/dev/null; }
	fi
	_fd=$(_mv_fd "$1")
	[ -n "$_fd" ] && eval "exec $_fd>&-"
	rm -f "$MV_DIR/$1.fd"
	return 0
}

mv_con() { tr -d '\r' <"$MV_DIR/$1.out" 2>/dev/null; }

mv_wait() {
	_i=0
	while [ $_i -lt $(($3 * 5)) ]; do
		mv_con "$1" | grep -q -E "$2" && return 0
		mv_alive "$1" || { mv_con "$1" | grep -q -E "$2"; return; }
		sleep 0.2
		_i=$((_i + 1))
	done
	return 1
}

g() {
	mv_seq=$((mv_seq + 1))
	gwhy=""
	[ -z "${MV_TRACE:-}" ] || echo "trace: $(cut -d' ' -f1 /proc/uptime) s: $mv_cur: step $mv_seq: $*"
	_fd=$(_mv_fd "$mv_cur")
	_from=$(mv_con "$mv_cur" | wc -l)
	if [ -z "$_fd" ]; then
		gwhy="no console to send '$*' to"
		gout=""
		return 1
	fi
	(
		trap '' PIPE
		eval "printf '%s %s\n' \"\$mv_seq\" \"\$*\" >&$_fd"
	) 2>/dev/null
	if ! mv_wait "$mv_cur" "^STEP-DONE $mv_seq rc=" "${GT:-300}"; then
		gout=$(mv_con "$mv_cur" | tail -n +"$((_from + 1))" | grep -v '^TICK ')
		gwhy="guest step '$*' did not finish"
		mv_alive "$mv_cur" || gwhy="$gwhy (the VMM exited)"
		return 1
	fi
	gout=$(mv_con "$mv_cur" | tail -n +"$((_from + 1))" | sed "/^STEP-DONE $mv_seq rc=/q" | grep -v '^TICK ')
	echo "$gout" | grep -q "^STEP-DONE $mv_seq rc=0\$" && return 0
	gwhy="guest step '$*' failed: $(echo "$gout" | tr '\n' '|')"
	return 1
}

gval() { echo "$gout" | sed -n "s/^$1//p" | head -n 1; }
