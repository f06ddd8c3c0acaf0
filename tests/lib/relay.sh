# Harness for the relay tests (tests/relay/*.sh): userops-mailer processes
# of their own against scripted relays (tests/lib/relay.py) on loopback.
#
# Each test file gets a database of its own on the stack's MariaDB, so the
# stack's mailer never takes its rows, and a configuration that differs from
# the stack's in [database] name, [smtp] and [mailer]. Everything it starts
# is recorded by PID and stopped by relay_cleanup, which the file runs on
# exit. Ports come from USEROPS_TEST_RELAY_PORT (default 12600) upwards.
#
# Source after assert.sh and operations.sh.

RELAY_TMP=$ASSERT_TMP/relay
RELAY_DB=userops_relay_$$
RELAY_NEXT_PORT=${USEROPS_TEST_RELAY_PORT:-12600}
RELAY_PIDS=()
RELAY_CA_DIR=
RELAY_CONF=
RELAY_STARTED_DB=no
mkdir -p "$RELAY_TMP"

relay_root_sql() {
	mariadb --no-defaults --socket="$USEROPS_DB_SOCKET" -u root --batch --skip-column-names \
		-e "$1"
}

# Prints a query's rows from this file's database.
relay_query() {
	mariadb --no-defaults --socket="$USEROPS_DB_SOCKET" -u root --batch --skip-column-names \
		"$RELAY_DB" -e "$1"
}

# Sets RELAY_PORT to the next port of this file's range. (A function whose
# output is captured runs in a subshell, which would lose the count.)
relay_port() {
	RELAY_PORT=$RELAY_NEXT_PORT
	RELAY_NEXT_PORT=$((RELAY_NEXT_PORT + 1))
}

# Creates this file's database, migrates it and writes the test CA.
relay_setup() {
	relay_root_sql "CREATE DATABASE $RELAY_DB CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
		GRANT ALL PRIVILEGES ON $RELAY_DB.* TO 'userops'@'localhost';" || return 1
	RELAY_STARTED_DB=yes
	RELAY_CONF=$(relay_write_conf base "tls = none" "port = 9")
	USEROPS_CTL_CONF=$RELAY_CONF ctl migrate >/dev/null 2>&1 || {
		echo "relay: cannot migrate $RELAY_DB" >&2
		return 1
	}
	RELAY_CA_DIR=$RELAY_TMP/ca
	bash "$ASSERT_REPO/tests/lib/test-ca.sh" "$RELAY_CA_DIR" >/dev/null || {
		echo "relay: cannot make the test CA" >&2
		return 1
	}
}

# Writes a configuration named NAME for this file's database whose [smtp]
# section contains a from address and each KEY = VALUE argument, and prints
# its path. Lines of RELAY_MAILER_CONF are added to [mailer].
relay_write_conf() {
	local name=$1 path=$RELAY_TMP/$1.conf line
	shift
	awk -v db="$RELAY_DB" '
		/^\[/ { section = $0 }
		section == "[database]" && /^name = / { print "name = " db; next }
		section == "[smtp]" || section == "[mailer]" { next }
		{ print }
	' "$USEROPS_CONF" >"$path"
	{
		echo "[smtp]"
		echo "from = userops@example.com"
		for line in "$@"; do
			echo "$line"
		done
		echo
		echo "[mailer]"
		echo "poll_interval_ms = 100"
		echo "templates_dir = ${RELAY_TEMPLATES:-$ASSERT_REPO/etc/templates}"
		echo "retry_wait = 1"
		echo "retry_wait_max = 2"
		printf '%s\n' "${RELAY_MAILER_CONF[@]+"${RELAY_MAILER_CONF[@]}"}"
	} >>"$path"
	echo "$path"
}

# Starts tests/lib/relay.py NAME on PORT with ARG..., storing mail in
# $RELAY_TMP/NAME.maildir and logging to $RELAY_TMP/NAME.log, and waits up to
# 10 s for its pidfile, which it writes once it accepts connections (a
# probe connection would count as a session, and would hang on --blackhole).
relay_start() {
	local name=$1 port=$2 pidfile tries
	shift 2
	pidfile=$RELAY_TMP/$name.pid
	rm -f -- "$pidfile"
	mkdir -p "$RELAY_TMP/$name.maildir"/{tmp,new,cur}
	/usr/bin/python3 "$ASSERT_REPO/tests/lib/relay.py" --listen "127.0.0.1:$port" \
		--maildir "$RELAY_TMP/$name.maildir" --log "$RELAY_TMP/$name.log" \
		--pidfile "$pidfile" "$@" >>"$RELAY_TMP/$name.out" 2>&1 &
	RELAY_PIDS+=("$!")
	eval "RELAY_PID_${name//-/_}=$!"
	for ((tries = 0; tries < 100; tries++)); do
		[[ -s $pidfile ]] && return 0
		sleep 0.1
	done
	echo "relay: $name did not start on $port: $(tail -n 3 "$RELAY_TMP/$name.out")" >&2
	return 1
}

# Stops the relay NAME started by relay_start.
relay_stop() {
	local var="RELAY_PID_${1//-/_}"
	relay_stop_pid "${!var}"
}

relay_stop_pid() {
	local pid=$1 tries
	kill "$pid" 2>/dev/null || return 0
	for ((tries = 0; tries < 50; tries++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# Starts userops-mailer NAME with configuration CONF, logging to
# $RELAY_TMP/NAME.mailer.log, and sets MAILER_PID.
mailer_start() {
	local name=$1 conf=$2
	"$USEROPS_BIN_DIR/userops-mailer" -c "$conf" >>"$RELAY_TMP/$name.mailer.log" 2>&1 &
	MAILER_PID=$!
	RELAY_PIDS+=("$MAILER_PID")
}

# Prints the mailer log of NAME.
mailer_log() {
	cat "$RELAY_TMP/$1.mailer.log" 2>/dev/null
}

# Creates an operation for ADDRESS in this file's database (locale LOCALE,
# default en, and any further create-operation arguments) and prints its uuid.
relay_create() {
	local address=$1 challenge
	shift
	challenge=$(USEROPS_CTL_CONF=$RELAY_CONF ctl create-operation --user "$(unique_id relay-user)" \
		--fingerprint relay-device --email "$address" --kind withdrawal \
		--param amount=100.00 "$@" 2>/dev/null) || return 1
	jq -r .uuid <<<"$challenge"
}

# Prints "status tries" of the newest outbox row to ADDRESS.
relay_row() {
	relay_query "SELECT status, tries FROM mail_outbox WHERE recipient = '$1'
		ORDER BY id DESC LIMIT 1"
}

# Prints the last SMTP reply recorded for the newest outbox row to ADDRESS.
relay_reply() {
	relay_query "SELECT last_reply FROM mail_outbox WHERE recipient = '$1'
		ORDER BY id DESC LIMIT 1"
}

# Waits up to SECONDS (default 20) until the newest row to ADDRESS has the
# status STATUS; prints its "status tries" either way.
relay_wait_status() {
	local address=$1 status=$2 seconds=${3:-20} row tries
	for ((tries = 0; tries < seconds * 10; tries++)); do
		row=$(relay_row "$address")
		if [[ ${row%%$'\t'*} == "$status" ]]; then
			break
		fi
		sleep 0.1
	done
	echo "$row"
}

# Prints how many messages the relay NAME stored for ADDRESS.
relay_count() {
	grep -l -s -F "X-RcptTo: $2" "$RELAY_TMP/$1.maildir/new/"* 2>/dev/null | wc -l
}

# Prints the path of the newest message the relay NAME stored for ADDRESS.
relay_latest() {
	# shellcheck disable=SC2012
	grep -l -s -F "X-RcptTo: $2" "$RELAY_TMP/$1.maildir/new/"* 2>/dev/null |
		xargs -r ls -t | head -n 1
}

# Stops everything this file started and drops its database. A test file
# calls it before test_finish, which removes the temporary files, and also
# on exit in case it stops early.
relay_cleanup() {
	local pid log
	for pid in "${RELAY_PIDS[@]+"${RELAY_PIDS[@]}"}"; do
		relay_stop_pid "$pid"
	done
	RELAY_PIDS=()
	if [[ $RELAY_STARTED_DB == yes ]]; then
		relay_root_sql "DROP DATABASE IF EXISTS $RELAY_DB" || true
		RELAY_STARTED_DB=no
	fi
	if [[ -n ${USEROPS_RELAY_LOG_DIR:-} ]]; then
		mkdir -p "$USEROPS_RELAY_LOG_DIR"
		for log in "$RELAY_TMP"/*.log; do
			if [[ -e $log ]]; then
				cp -- "$log" "$USEROPS_RELAY_LOG_DIR/$ASSERT_FILE-${log##*/}"
			fi
		done
	fi
	return 0
}
