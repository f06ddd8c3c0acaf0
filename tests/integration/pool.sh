#!/usr/bin/env bash
# The worker pool under signals: a pool of userops-fcgi on its own unix
# socket ([server] listen) behind its own lighttpd on the stack's port + 10,
# under a bounded load of curl loops (GET /health). Also socket activation
# with systemd-socket-activate and sd_notify to a NOTIFY_SOCKET of the test.
#
# What "loses none" means on SIGTERM: the supervisor first removes the
# socket file, so lighttpd's new connections fail at once and lighttpd
# responds 503 itself. A worker serves every connection already made (200).
# A 502, a 500 or no response at all counts as lost.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"

POOL_DIR=$ASSERT_TMP/pool
POOL_SOCKET=$POOL_DIR/pool.sock
POOL_LOG=$POOL_DIR/pool.log
POOL_SEAL_KEY=$POOL_DIR/seal.key
POOL_PORT=$((${USEROPS_URL##*:} + 10))
POOL_URL=http://127.0.0.1:$POOL_PORT
POOL_WORKERS=3
POOL_DRAIN_TIMEOUT=10
# Parallel curl loops of a load, and the maximum requests each sends.
LOAD_CLIENTS=4
LOAD_MAX_REQUESTS=3000
POOL_PID=
LIGHTTPD_PID=
LOAD_PIDS=()
mkdir -p "$POOL_DIR"

# Writes the configuration FILE: the stack's, with the pool's [server]
# settings (listen, workers, drain_timeout, then any "key = value" given)
# and a copy of the seal key that a case may remove.
pool_write_conf() {
	local file=$1 listen=$2 seal_source
	shift 2
	seal_source=$(sed -n 's/^key_file *= *//p' "$USEROPS_CONF" | head -n 1)
	cp "$seal_source" "$POOL_SEAL_KEY"
	chmod 600 "$POOL_SEAL_KEY"
	{
		awk '/^\[/ { section = $0 }
			section == "[server]" && /^(listen|workers|max_requests|drain_timeout) *=/ { next }
			section == "[seal]" && /^key_file *=/ { next }
			{ print }
			$0 == "[server]" { print "__SERVER__" }
			$0 == "[seal]" { print "__SEAL__" }' "$USEROPS_CONF"
	} | awk -v listen="$listen" -v workers="$POOL_WORKERS" -v drain="$POOL_DRAIN_TIMEOUT" \
		-v key="$POOL_SEAL_KEY" -v extra="$*" '
		$0 == "__SERVER__" {
			print "listen = " listen
			print "workers = " workers
			print "drain_timeout = " drain
			if (extra != "") print extra
			next
		}
		$0 == "__SEAL__" { print "key_file = " key; next }
		{ print }' >"$file"
}

# Appends the log of the last pool to all.log and empties it for the next.
pool_keep_log() {
	if [[ -f $POOL_LOG ]]; then
		cat "$POOL_LOG" >>"$POOL_DIR/all.log"
	fi
	: >"$POOL_LOG"
}

# Prints the PIDs of the pool's workers, one a line, sorted.
pool_worker_pids() {
	ps -o pid= --ppid "$POOL_PID" 2>/dev/null | tr -d ' ' | sort || true
}

# Waits up to 10 s until GET /health through lighttpd returns 200.
pool_wait_serving() {
	local tries status=
	for ((tries = 0; tries < 100; tries++)); do
		status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$POOL_URL/health" || true)
		[[ $status == 200 ]] && return 0
		sleep 0.1
	done
	echo "pool: GET /health through lighttpd returned $status for 10 s" >&2
	return 1
}

# Starts a pool on CONF and waits until its first generation is ready.
pool_start() {
	local conf=$1 tries
	pool_keep_log
	"$USEROPS_BIN_DIR/userops-fcgi" -c "$conf" </dev/null >>"$POOL_LOG" 2>&1 &
	POOL_PID=$!
	for ((tries = 0; tries < 100; tries++)); do
		grep -q 'generation 1 ready' "$POOL_LOG" && break
		sleep 0.1
	done
	grep -q 'generation 1 ready' "$POOL_LOG" || {
		echo "pool: not ready within 10 s; the end of $POOL_LOG:" >&2
		tail -n 20 "$POOL_LOG" >&2
		return 1
	}
	pool_wait_serving
}

# Stops the pool with SIGTERM (SIGKILL after 15 s) and sets POOL_STATUS.
pool_stop() {
	local tries
	POOL_STATUS=
	[[ -n $POOL_PID ]] || return 0
	kill -TERM "$POOL_PID" 2>/dev/null || true
	for ((tries = 0; tries < 1500; tries++)); do
		[[ $(awk '{print $3}' "/proc/$POOL_PID/stat" 2>/dev/null || echo gone) == @(Z|gone) ]] && break
		sleep 0.01
	done
	if kill -0 "$POOL_PID" 2>/dev/null; then
		kill -KILL "$POOL_PID" 2>/dev/null || true
	fi
	POOL_STATUS=0
	wait "$POOL_PID" 2>/dev/null || POOL_STATUS=$?
	POOL_PID=
}

lighttpd_start() {
	cat >"$POOL_DIR/lighttpd.conf" <<EOF
# lighttpd in front of the pool of tests/integration/pool.sh.
server.modules = ("mod_fastcgi")
server.bind = "127.0.0.1"
server.port = $POOL_PORT
server.document-root = "$POOL_DIR"
server.errorlog = "$POOL_DIR/lighttpd.log"
fastcgi.server = ( "/" => ((
	"socket" => "$POOL_SOCKET",
	"check-local" => "disable",
	"disable-time" => 1,
)) )
EOF
	lighttpd -D -f "$POOL_DIR/lighttpd.conf" </dev/null >>"$POOL_DIR/lighttpd.log" 2>&1 &
	LIGHTTPD_PID=$!
}

cleanup() {
	local pid
	for pid in "${LOAD_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	pool_stop || true
	if [[ -n $LIGHTTPD_PID ]]; then
		kill "$LIGHTTPD_PID" 2>/dev/null || true
		wait "$LIGHTTPD_PID" 2>/dev/null || true
	fi
}
trap cleanup EXIT

# Starts LOAD_CLIENTS loops of GET /health for SECONDS seconds, each
# writing one status a line to $POOL_DIR/status-N (000: no response).
load_start() {
	local seconds=$1 i
	LOAD_PIDS=()
	for ((i = 0; i < LOAD_CLIENTS; i++)); do
		: >"$POOL_DIR/status-$i"
		(
			end=$((SECONDS + seconds))
			for ((n = 0; n < LOAD_MAX_REQUESTS && SECONDS < end; n++)); do
				curl -s -o /dev/null -w '%{http_code}\n' --max-time 5 "$POOL_URL/health" || true
			done >>"$POOL_DIR/status-$i"
		) &
		LOAD_PIDS+=($!)
	done
}

# Waits for the load and sets LOAD_TOTAL, LOAD_OK (200), LOAD_REFUSED (503)
# and LOAD_LOST (anything else), and LOAD_SUMMARY as "status:count ...".
load_finish() {
	local pid
	for pid in "${LOAD_PIDS[@]}"; do
		wait "$pid" || true
	done
	LOAD_PIDS=()
	cat "$POOL_DIR"/status-* >"$POOL_DIR/statuses"
	LOAD_TOTAL=$(wc -l <"$POOL_DIR/statuses")
	LOAD_OK=$(grep -c '^200$' "$POOL_DIR/statuses" || true)
	LOAD_REFUSED=$(grep -c '^503$' "$POOL_DIR/statuses" || true)
	LOAD_LOST=$((LOAD_TOTAL - LOAD_OK - LOAD_REFUSED))
	LOAD_SUMMARY=$(sort "$POOL_DIR/statuses" | uniq -c | awk '{ printf "%s%s:%s", sep, $2, $1; sep = " " }')
	echo "     load: $LOAD_TOTAL requests ($LOAD_SUMMARY)"
}

# Waits up to SECONDS until the load has received COUNT answers, so a signal
# lands under load however slow the build under test is.
load_wait_answers() {
	local count=$1 seconds=$2 tries
	for ((tries = 0; tries < seconds * 10; tries++)); do
		(($(cat "$POOL_DIR"/status-* | wc -l) >= count)) && return 0
		sleep 0.1
	done
	return 1
}

# Waits up to SECONDS for the pool to have POOL_WORKERS workers again.
wait_worker_count() {
	local seconds=$1 tries
	for ((tries = 0; tries < seconds * 10; tries++)); do
		(($(pool_worker_pids | wc -l) == POOL_WORKERS)) && return 0
		sleep 0.1
	done
	return 1
}

pool_kill_one_worker() {
	local victim before
	before=$(pool_worker_pids)
	victim=$(head -n 1 <<<"$before")
	load_start 6
	load_wait_answers 20 5 || assert_fail "the load got fewer than 20 answers in 5 s"
	kill -KILL "$victim"
	load_finish
	if ((LOAD_OK + 1 < LOAD_TOTAL)); then
		assert_fail "kill -9 of one worker: $LOAD_SUMMARY, expected at most 1 answer not 200"
	fi
	if ((LOAD_OK < 20)); then
		assert_fail "kill -9 of one worker: only $LOAD_OK answers 200"
	fi
	wait_worker_count 5 || assert_fail "worker count not back to $POOL_WORKERS within 5 s: $(pool_worker_pids | tr '\n' ' ')"
	grep -q "worker pid=$victim killed by signal 9" "$POOL_LOG" ||
		assert_fail "no log line on the death of worker $victim"
	if pool_worker_pids | grep -qx "$victim"; then
		assert_fail "worker $victim still listed after kill -9"
	fi
}

pool_reload_under_load() {
	local before after
	before=$(pool_worker_pids)
	load_start 6
	load_wait_answers 20 5 || assert_fail "the load got fewer than 20 answers in 5 s"
	kill -HUP "$POOL_PID"
	load_finish
	assert_equal "answers other than 200 during SIGHUP" 0 "$((LOAD_TOTAL - LOAD_OK))"
	wait_worker_count 5 || assert_fail "worker count not $POOL_WORKERS after the reload"
	after=$(pool_worker_pids)
	if [[ -n $(comm -12 <(echo "$before") <(echo "$after")) ]]; then
		assert_fail "workers kept across SIGHUP: before $(echo $before), after $(echo $after)"
	fi
	grep -q 'generation 2 ready' "$POOL_LOG" || assert_fail "no 'generation 2 ready' log line"
}

pool_stop_under_load() {
	local start end
	load_start 12
	load_wait_answers 20 10 || assert_fail "the load got fewer than 20 answers in 10 s"
	start=$(date +%s%N)
	pool_stop
	end=$(date +%s%N)
	load_finish
	echo "     SIGTERM under load: supervisor exited $POOL_STATUS after $(((end - start) / 1000000)) ms"
	assert_equal "supervisor exit status after SIGTERM" 0 "$POOL_STATUS"
	if ((end - start >= POOL_DRAIN_TIMEOUT * 1000000000)); then
		assert_fail "SIGTERM under load took $(((end - start) / 1000000)) ms, drain_timeout is ${POOL_DRAIN_TIMEOUT} s"
	fi
	assert_equal "answers neither 200 nor 503 during SIGTERM ($LOAD_SUMMARY)" 0 "$LOAD_LOST"
	if ((LOAD_OK < 20)); then
		assert_fail "SIGTERM under load: only $LOAD_OK answers 200 before the stop"
	fi
	[[ ! -e $POOL_SOCKET ]] || assert_fail "socket file $POOL_SOCKET left after the stop"
}

pool_stop_idle() {
	local start end ms
	pool_start "$POOL_DIR/pool.conf"
	sleep 0.5
	start=$(date +%s%N)
	pool_stop
	end=$(date +%s%N)
	ms=$(((end - start) / 1000000))
	echo "     idle pool stopped in $ms ms"
	assert_equal "supervisor exit status after SIGTERM" 0 "$POOL_STATUS"
	if ((ms >= 2000)); then
		assert_fail "idle pool took $ms ms to exit after SIGTERM, at most 2000 expected"
	fi
}

# A configuration that fails to load on SIGHUP keeps the running workers.
pool_reload_bad_config() {
	local before after status
	pool_write_conf "$POOL_DIR/reload.conf" "unix:$POOL_SOCKET"
	pool_start "$POOL_DIR/reload.conf"
	before=$(pool_worker_pids)
	printf '[server]\nno_such_key = 1\n' >>"$POOL_DIR/reload.conf"
	kill -HUP "$POOL_PID"
	sleep 1
	after=$(pool_worker_pids)
	assert_equal "workers after a failed reload" "$before" "$after"
	grep -q 'reload failed, keeping the running workers: .*unknown key \[server\] no_such_key' \
		"$POOL_LOG" || assert_fail "no log line naming the failed reload"
	status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$POOL_URL/health" || true)
	assert_equal "GET /health after a failed reload" 200 "$status"
	pool_stop
}

# The seal key disappears, then SIGHUP: the new workers exit 1 at start and
# are restarted with a growing delay while the old ones keep serving.
pool_failing_start_retried() {
	local delays status
	pool_start "$POOL_DIR/pool.conf"
	rm -f "$POOL_SEAL_KEY"
	kill -HUP "$POOL_PID"
	sleep 7.5
	delays=$(sed -n 's/.*exited with status 1 after .* restarting it in \([0-9]*\) ms$/\1/p' \
		"$POOL_LOG" | sort -n -u | tr '\n' ' ')
	echo "     restart delays seen: $delays"
	assert_equal "first three restart delays" "1000 2000 4000 " "$(cut -d' ' -f1-3 <<<"$delays") "
	if (($(grep -c 'exited with status 1 after' "$POOL_LOG") < 3)); then
		assert_fail "fewer than 3 failed starts logged"
	fi
	grep -q 'seal\] key_file' "$POOL_LOG" || assert_fail "the failing worker did not log why"
	status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$POOL_URL/health" || true)
	assert_equal "GET /health while the new generation fails" 200 "$status"
	pool_stop
	assert_equal "supervisor exit status after SIGTERM" 0 "$POOL_STATUS"
}

pool_max_requests_recycles() {
	local before after i status bad=0
	pool_write_conf "$POOL_DIR/recycle.conf" "unix:$POOL_SOCKET" "max_requests = 5"
	pool_start "$POOL_DIR/recycle.conf"
	before=$(pool_worker_pids)
	for ((i = 0; i < 20; i++)); do
		status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$POOL_URL/health" || true)
		[[ $status == 200 ]] || bad=$((bad + 1))
	done
	assert_equal "answers other than 200 over 20 requests" 0 "$bad"
	wait_worker_count 5 || assert_fail "worker count not $POOL_WORKERS after recycling"
	after=$(pool_worker_pids)
	if [[ $before == "$after" ]]; then
		assert_fail "no worker replaced after 20 requests with max_requests = 5"
	fi
	if (($(grep -c 'stopping after max_requests=5 requests' "$POOL_LOG") < 2)); then
		assert_fail "fewer than 2 workers recycled after 20 requests"
	fi
	pool_stop
}

# Sends GET /health over FastCGI to the unix socket PATH with cgi-fcgi.
fcgi_get_health() {
	env -i REQUEST_METHOD=GET SCRIPT_NAME=/health SERVER_PROTOCOL=HTTP/1.1 \
		timeout 10 cgi-fcgi -bind -connect "$1" 2>/dev/null
}

pool_socket_activation_notify() {
	local sock=$POOL_DIR/activated.sock notify=$POOL_DIR/notify.sock messages=$POOL_DIR/notify.txt
	local listener reply tries
	pool_write_conf "$POOL_DIR/activated.conf" ""
	: >"$messages"
	timeout 60 python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
with open(sys.argv[2], "a") as out:
    for _ in range(20):
        try:
            data = s.recv(4096).decode()
        except socket.timeout:
            break
        out.write(data.replace("\n", " ") + "\n")
        out.flush()
        if "STOPPING=1" in data:
            break
' "$notify" "$messages" &
	listener=$!
	for ((tries = 0; tries < 50; tries++)); do
		[[ -S $notify ]] && break
		sleep 0.1
	done
	pool_keep_log
	NOTIFY_SOCKET=$notify systemd-socket-activate -l "$sock" -E NOTIFY_SOCKET \
		-E ASAN_OPTIONS -E UBSAN_OPTIONS \
		"$USEROPS_BIN_DIR/userops-fcgi" -c "$POOL_DIR/activated.conf" \
		</dev/null >>"$POOL_LOG" 2>&1 &
	POOL_PID=$!
	for ((tries = 0; tries < 50; tries++)); do
		[[ -S $sock ]] && break
		sleep 0.1
	done
	reply=$(fcgi_get_health "$sock" || true)
	[[ $reply == *'"status":"ok"'* ]] || assert_fail "GET /health over the activated socket: '$reply'"
	for ((tries = 0; tries < 50; tries++)); do
		grep -q 'READY=1' "$messages" && break
		sleep 0.1
	done
	grep -q 'READY=1' "$messages" || assert_fail "no READY=1 on NOTIFY_SOCKET"
	grep -q 'fd 3 from systemd' "$POOL_LOG" || assert_fail "the supervisor did not log the activated socket"
	assert_equal "workers of the activated pool" "$POOL_WORKERS" "$(pool_worker_pids | wc -l)"
	pool_stop
	assert_equal "activated pool exit status" 0 "$POOL_STATUS"
	wait "$listener" 2>/dev/null || true
	grep -q 'STOPPING=1' "$messages" || assert_fail "no STOPPING=1 on NOTIFY_SOCKET"
}

# The workers exit normally, so a sanitizer build reports leaks here.
pool_no_sanitizer_report() {
	local hit
	pool_keep_log
	hit=$(grep -h -m 1 -e AddressSanitizer -e LeakSanitizer -e 'runtime error:' \
		"$POOL_DIR/all.log" || true)
	[[ -z $hit ]] || assert_fail "sanitizer report in the pool's log: $hit"
}

pool_write_conf "$POOL_DIR/pool.conf" "unix:$POOL_SOCKET"
lighttpd_start
if ! pool_start "$POOL_DIR/pool.conf"; then
	echo "pool: the pool did not start; the end of $POOL_LOG:" >&2
	tail -n 20 "$POOL_LOG" >&2
fi

test_case "kill -9 of a worker" pool_kill_one_worker
test_case "SIGHUP under load" pool_reload_under_load
test_case "SIGTERM under load" pool_stop_under_load
test_case "idle pool stops fast" pool_stop_idle
test_case "failed reload keeps workers" pool_reload_bad_config
test_case "failing start retried" pool_failing_start_retried
test_case "max_requests recycles workers" pool_max_requests_recycles
test_case "socket activation and notify" pool_socket_activation_notify
test_case "no sanitizer report in pool logs" pool_no_sanitizer_report
test_finish
