#!/usr/bin/env bash
# MariaDB stopped and started again under a running stack. During the outage
# /health returns 503 and every operation route 503001 with Retry-After.
# Afterwards the same FastCGI workers (none restarted) and the same mailer
# serve again within 10 s, the operation is still pending with no attempt
# used, a resend is mailed and the mailed code confirms. No request gets
# another status than 200 or 503. The file restarts MariaDB on exit if a
# case left it stopped, so that the files after it find the database up.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"
# shellcheck source=SCRIPTDIR/../lib/stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/stack.sh"
STACK_DIR=$USEROPS_STACK_DIR

# Seconds the service may take to serve again once MariaDB responds to ping.
RECOVERY_TIMEOUT=10
# Parallel requests per mount in a burst: more than the 4 workers of each
# mount, so that lighttpd hands requests to several of them.
BURST_SIZE=8
MAX_ATTEMPTS=5
# Seconds MariaDB stays stopped at least.
MIN_OUTAGE=3
OUTAGE_START=0

USER_ID=
FINGERPRINT=
EMAIL=
TOKEN=
UUID=
CHALLENGE=
WORKERS_BEFORE=
MAILER_PID=
DATABASE_STOPPED=no
# Every status that a request of this file got, one per line, with the phase.
STATUS_LOG=$ASSERT_TMP/statuses

# Prints the PIDs of the userops-fcgi workers behind the stack's front end
# and of the second lighttpd's workers, sorted.
worker_pids() {
	local file
	{
		frontend_worker_pids
		for file in "$USEROPS_STACK_DIR"/pids/*lighttpd-strict.pid; do
			[[ -r $file ]] || continue
			ps -o pid= -o comm= --ppid "$(<"$file")" | awk '$2 == "userops-fcgi" { print $1 }'
		done
	} | sort -n
}

# Sends a request as the current user and device and logs its status.
request() {
	local method=$1 path=$2
	shift 2
	http_request "$method" "$path" -t "$TOKEN" -f "$FINGERPRINT" "$@"
	echo "$PHASE $HTTP_STATUS $method $path" >>"$STATUS_LOG"
}

# Sends BURST_SIZE GETs of the operation at once on each mount, logs their
# statuses and prints them one per line.
burst() {
	local mount i
	local -a pids=()
	for mount in "" /api; do
		for ((i = 0; i < BURST_SIZE; i++)); do
			curl -s -o /dev/null --max-time 15 -w '%{http_code}\n' \
				-H "Authorization: Bearer $TOKEN" -H "Fingerprint: $FINGERPRINT" \
				"$USEROPS_URL$mount/operations/$UUID" >"$ASSERT_TMP/burst-${mount#/}-$i" &
			pids+=($!)
		done
	done
	for i in "${pids[@]}"; do
		wait "$i" || true
	done
	cat "$ASSERT_TMP"/burst-* | sed "s|^|$PHASE |; s|$| GET (burst)|" >>"$STATUS_LOG"
	cat "$ASSERT_TMP"/burst-*
	rm -f "$ASSERT_TMP"/burst-*
}

# Starts MariaDB again when a case left it stopped.
restore_database() {
	if [[ $DATABASE_STOPPED == yes ]]; then
		echo "database: starting MariaDB again" >&2
		stack_db_start || echo "database: could not start MariaDB again" >&2
	fi
}

create_before_outage() {
	USER_ID=$(unique_id database-user)
	FINGERPRINT=$(unique_id database-device)
	EMAIL="$(unique_id database)@example.com"
	TOKEN=$(mint_token "$USER_ID") || assert_fail "userops-ctl issue-token failed" || return 1
	CHALLENGE=$(create_operation --user "$USER_ID" --fingerprint "$FINGERPRINT" \
		--email "$EMAIL" --kind withdrawal) ||
		assert_fail "userops-ctl create-operation failed" || return 1
	UUID=$(jq -r .uuid <<<"$CHALLENGE")
	mail_wait "$EMAIL" 1 || return 1

	request GET "/operations/$UUID"
	assert_status 200 || return 1
	assert_json .data.status pending

	WORKERS_BEFORE=$(worker_pids)
	if [[ -z $WORKERS_BEFORE ]]; then
		assert_fail "no userops-fcgi worker found behind $ASSERT_FRONTEND or the second lighttpd"
	fi
	MAILER_PID=$(cat "$USEROPS_STACK_DIR"/pids/*-mailer.pid 2>/dev/null || true)
}

stop_database() {
	stack_set_paths || return 1
	assert_equal "MariaDB socket that stack.sh derives from $STACK_DIR" "$USEROPS_DB_SOCKET" "$STACK_DB_SOCKET" ||
		return 1
	DATABASE_STOPPED=yes
	OUTAGE_START=$SECONDS
	stack_db_stop || assert_fail "stack_db_stop failed" || return 1
	if mariadb-admin --no-defaults --socket="$USEROPS_DB_SOCKET" -u root ping >/dev/null 2>&1; then
		assert_fail "MariaDB still answers on $USEROPS_DB_SOCKET after stack_db_stop"
	fi
}

health_unavailable() {
	local mount
	for mount in "" /api; do
		http_request GET "$mount/health"
		echo "$PHASE $HTTP_STATUS GET $mount/health" >>"$STATUS_LOG"
		assert_status 503 || continue
		assert_json '. | tojson' '{"status":"unavailable"}'
	done
}

get_unavailable() {
	local mount status
	for mount in "" /api; do
		request GET "$mount/operations/$UUID"
		assert_error 503001 || continue
		assert_header_matches Retry-After '^[1-9][0-9]*$'
	done
	for status in $(burst); do
		if [[ $status != 503 ]]; then
			assert_fail "a GET in a burst of $((2 * BURST_SIZE)) during the outage returned $status, not 503"
		fi
	done
}

# A confirm during the outage must not count as an attempt.
confirm_unavailable() {
	request PUT "/operations/$UUID/confirm" -d '{"emailCode": "000000"}'
	assert_error 503001 || return 1
	assert_header_matches Retry-After '^[1-9][0-9]*$'
}

start_database() {
	# An outage of a few seconds, so that the mailer waits and retries.
	while ((SECONDS < OUTAGE_START + MIN_OUTAGE)); do
		sleep 0.2
	done
	stack_db_start || assert_fail "stack_db_start failed" || return 1
	DATABASE_STOPPED=no
}

# Prints the HTTP status that the worker on the FastCGI SOCKET returns to
# GET /health, asked directly with cgi-fcgi (libfcgi-bin).
worker_health() {
	local answer
	answer=$(env -i REQUEST_METHOD=GET SCRIPT_NAME=/health SERVER_PROTOCOL=HTTP/1.1 \
		REMOTE_ADDR=127.0.0.1 timeout 5 cgi-fcgi -bind -connect "$1" </dev/null 2>&1 || true)
	awk 'NR == 1 { print $2 }' <<<"$answer"
}

# Polls for at most RECOVERY_TIMEOUT seconds until every worker of every
# lighttpd returns 200 to GET /health on its own socket, then until /health
# and the operation return 200 on both mounts and a burst of GETs gets only
# 200. A worker whose connection broke while it was idle returns 503 to its
# next request and reconnects for the one after, so each worker's own socket
# is polled until it returns 200. That leaves no broken connection to the
# test files that follow.
service_recovers() {
	local deadline=$((SECONDS + RECOVERY_TIMEOUT)) mount ok status socket
	local -A healthy=()
	while ((SECONDS < deadline)); do
		ok=yes
		for socket in "$USEROPS_SOCKET_DIR"/*.sock-*; do
			[[ -S $socket && -z ${healthy[$socket]:-} ]] || continue
			status=$(worker_health "$socket")
			echo "$PHASE ${status:-000} GET /health (worker on $(basename "$socket"))" >>"$STATUS_LOG"
			if [[ $status == 200 ]]; then
				healthy[$socket]=yes
			else
				ok=no
			fi
		done
		if [[ $ok == no ]]; then
			sleep 0.2
			continue
		fi
		for mount in "" /api; do
			http_request GET "$mount/health"
			echo "$PHASE $HTTP_STATUS GET $mount/health" >>"$STATUS_LOG"
			[[ $HTTP_STATUS == 200 ]] || ok=no
			request GET "$mount/operations/$UUID"
			[[ $HTTP_STATUS == 200 ]] || ok=no
		done
		if [[ $ok == yes ]]; then
			for status in $(burst); do
				[[ $status == 200 ]] || ok=no
			done
		fi
		[[ $ok == yes ]] && return 0
		sleep 0.2
	done
	assert_fail "the workers did not all return 200 on /health, the operation and a burst of GETs within $RECOVERY_TIMEOUT s of MariaDB's restart"
}

operation_intact() {
	request GET "/operations/$UUID"
	assert_status 200 || return 1
	assert_json .data.status pending
	assert_json .data.attemptsLeft "$MAX_ATTEMPTS"
	assert_json .data.expiresAt "$(jq -r .expiresAt <<<"$CHALLENGE")"
}

# Every worker that ran before the outage still runs. mod_fcgid may have
# started more processes for the bursts, so new PIDs are allowed.
workers_not_restarted() {
	local after pid
	after=$(worker_pids)
	for pid in $WORKERS_BEFORE; do
		if ! grep -qx "$pid" <<<"$after"; then
			assert_fail "userops-fcgi worker $pid no longer runs after the outage (workers before: $(echo $WORKERS_BEFORE); after: $(echo $after))"
		fi
	done
	if [[ -n $MAILER_PID ]] && ! stack_pid_alive "$MAILER_PID"; then
		assert_fail "userops-mailer (PID $MAILER_PID) no longer runs"
	fi
}

only_200_or_503() {
	local unexpected
	unexpected=$(awk '$2 != 200 && $2 != 503' "$STATUS_LOG")
	if [[ -n $unexpected ]]; then
		assert_fail "requests answered with another status than 200 or 503: $(head -n 3 <<<"$unexpected" | tr '\n' ';')"
	fi
	if ! grep -q '^outage 503 ' "$STATUS_LOG"; then
		assert_fail "no request got 503 during the outage"
	fi
}

# The mailer must deliver a mail queued after the outage.
resend_mailed() {
	local after
	after=$(jq -r .resendEmailAfter <<<"$CHALLENGE")
	wait_until "$after" 30 || return 1
	request PUT "/operations/$UUID/resend"
	assert_status 200 || return 1
	mail_wait "$EMAIL" 2 30
}

confirm_after_outage() {
	local code
	code=$(mail_latest_code "$EMAIL") || assert_fail "no code in the mail to the test address" || return 1
	request PUT "/operations/$UUID/confirm" -d "$(jq -cn --arg c "$code" '{emailCode: $c}')"
	assert_status 200 || return 1
	assert_json .data.status confirmed
}

trap restore_database EXIT

PHASE=before
test_case "operation created before outage" create_before_outage
test_case "MariaDB stopped" stop_database
PHASE=outage
test_case "health 503 during outage" health_unavailable
test_case "GET 503001 during outage" get_unavailable
test_case "confirm 503001 during outage" confirm_unavailable
test_case "MariaDB started again" start_database
PHASE=recovery
test_case "service serves again within 10 s" service_recovers
PHASE=after
test_case "operation intact after outage" operation_intact
test_case "workers and mailer not restarted" workers_not_restarted
test_case "resend mailed after outage" resend_mailed
test_case "confirm with mailed code after outage" confirm_after_outage
test_case "only 200 or 503 answered" only_200_or_503
test_finish
