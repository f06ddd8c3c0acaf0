# Starts and stops a private userops stack: MariaDB, an SMTP sink, a front
# end (lighttpd by default) with userops-fcgi, and userops-mailer, all under
# one state folder.
#
# Source this file, set the variables below, then call stack_start and later
# stack_stop. Every process is recorded by PID in $STACK_DIR/pids and stopped
# by that PID only.
#
#   STACK_DIR              state folder (required); stack_start empties it
#   STACK_HTTP_PORT        the front end's port on 127.0.0.1 (default 8080)
#   STACK_DB_PORT          MariaDB port on 127.0.0.1 (default 3316)
#   STACK_SMTP_PORT        SMTP sink port on 127.0.0.1 (default 2526)
#   STACK_BIN_DIR          folder with the built programs (default build/)
#   STACK_RESEND_COOLDOWN  [operations] resend_cooldown in seconds (default 60)
#   STACK_EXTRA_CONF       text appended to the generated userops.conf
#   STACK_STRICT           yes starts a second lighttpd whose workers read
#                          userops-strict.conf, the same configuration but
#                          with accept_previous_code = no (default no)
#   STACK_STRICT_HTTP_PORT port of that second lighttpd (default STACK_HTTP_PORT + 1)
#   STACK_FRONTEND         the front end on STACK_HTTP_PORT (default lighttpd):
#                          lighttpd           lighttpd spawns the workers (bin-path)
#                          lighttpd-pool      lighttpd, etc/lighttpd-pool.conf
#                          nginx              nginx, etc/nginx.conf
#                          apache-fcgid       Apache mod_fcgid spawns the workers,
#                                             etc/apache-fcgid.conf
#                          apache-proxy-fcgi  Apache mod_proxy_fcgi, etc/apache-proxy-fcgi.conf
#                          The second lighttpd (STACK_STRICT) is the same for all.
#   STACK_POOL_WORKERS     workers of the pool behind the socket-based front ends (default 4)
#
# The socket-based front ends (lighttpd-pool, nginx, apache-proxy-fcgi)
# connect to a userops-fcgi pool on $STACK_SOCKET_DIR/pool.sock, started with
# [server] listen set in userops-pool.conf; when that userops-fcgi does not
# bind the socket within 3 s, spawn-fcgi starts the workers instead. Each
# front end runs from its etc/ example with the paths replaced by the stack's.
#
# stack_start writes $STACK_DIR/stack.env, which the integration tests source
# to find the URLs, the configurations, the Maildir, the logs and the sockets.
# The FastCGI sockets are $USEROPS_SOCKET_DIR/fcgi.sock-N (mounted at /) and
# fcgi-api.sock-N (at /api/), N from 0 to 3; the second lighttpd's are
# strict.sock-N, N from 0 to 1, so that the glob fcgi*.sock-* finds only the
# first lighttpd's workers.
# Behind apache-fcgid the workers' sockets are in $USEROPS_FCGID_DIR.
#
# Each lighttpd runs in the foreground (-D) with its stdout and stderr
# appended to its server.errorlog. The FastCGI workers it spawns inherit that
# stderr rather than writing through server.errorlog (lighttpd 1.4.69 on
# Debian 12), so the one file holds lighttpd's lines and the workers' lines.
#
# stack_db_stop and stack_db_start stop and start the stack's MariaDB alone,
# for tests of a database outage.

STACK_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STACK_MARIADB_USER=mysql

stack_log() {
	echo "stack: $*" >&2
}

# Prints N random bytes as lower-case hex.
stack_random_hex() {
	od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

# Succeeds when something accepts TCP connections on 127.0.0.1:PORT.
stack_port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

stack_require_free_port() {
	if stack_port_open "$1"; then
		stack_log "port $1 on 127.0.0.1 is already in use (needed for $2)"
		return 1
	fi
}

# Succeeds when the MariaDB user may enter DIR, judged by its nearest
# existing ancestor, since stack_start creates the rest with mode 755.
stack_mysql_can_enter() {
	local dir=$1
	((EUID == 0)) || return 0
	while [[ ! -d $dir ]]; do
		dir=$(dirname "$dir")
	done
	runuser -u "$STACK_MARIADB_USER" -- test -x "$dir"
}

# Sets the derived paths from STACK_DIR and the defaults of the other settings.
stack_set_paths() {
	if [[ -z ${STACK_DIR:-} || $STACK_DIR == / ]]; then
		stack_log "STACK_DIR must name a state folder"
		return 1
	fi
	STACK_HTTP_PORT=${STACK_HTTP_PORT:-8080}
	STACK_DB_PORT=${STACK_DB_PORT:-3316}
	STACK_SMTP_PORT=${STACK_SMTP_PORT:-2526}
	STACK_BIN_DIR=${STACK_BIN_DIR:-$STACK_REPO/build}
	STACK_RESEND_COOLDOWN=${STACK_RESEND_COOLDOWN:-60}
	STACK_EXTRA_CONF=${STACK_EXTRA_CONF:-}
	STACK_STRICT=${STACK_STRICT:-no}
	STACK_STRICT_HTTP_PORT=${STACK_STRICT_HTTP_PORT:-$((STACK_HTTP_PORT + 1))}
	STACK_FRONTEND=${STACK_FRONTEND:-lighttpd}
	STACK_POOL_WORKERS=${STACK_POOL_WORKERS:-4}

	STACK_PID_DIR=$STACK_DIR/pids
	STACK_SECRET_DIR=$STACK_DIR/secrets
	STACK_CONF=$STACK_DIR/userops.conf
	STACK_STRICT_CONF=$STACK_DIR/userops-strict.conf
	STACK_MAILDIR=$STACK_DIR/maildir
	STACK_ERROR_LOG=$STACK_DIR/lighttpd-error.log
	STACK_STRICT_ERROR_LOG=$STACK_DIR/lighttpd-strict-error.log
	STACK_MAILER_LOG=$STACK_DIR/mailer.log
	STACK_CTL_LOG=$STACK_DIR/ctl.log
	STACK_POOL_CONF=$STACK_DIR/userops-pool.conf
	STACK_POOL_LOG=$STACK_DIR/pool.log
	STACK_FRONTEND_LOG=$STACK_DIR/$STACK_FRONTEND-error.log
	# The log that receives the workers' stderr lines.
	case $STACK_FRONTEND in
	lighttpd | apache-fcgid) STACK_ERROR_LOG=$STACK_FRONTEND_LOG ;;
	*) STACK_ERROR_LOG=$STACK_POOL_LOG ;;
	esac
	STACK_INTERNAL_AUDIENCE=userops-internal
	STACK_URL=http://127.0.0.1:$STACK_HTTP_PORT
	STACK_STRICT_URL=http://127.0.0.1:$STACK_STRICT_HTTP_PORT

	# Unix socket paths are limited to 107 bytes and lighttpd appends a
	# suffix per process. mariadbd runs as mysql, which may not be allowed
	# into the state folder (a clone under /root, say). In either case the
	# sockets and MariaDB's files go to a folder under /tmp named after a
	# hash of the state folder's path.
	STACK_RUNTIME_DIR=/tmp/userops-stack-$(printf '%s' "$STACK_DIR" | sha256sum | cut -c1-12)
	if ((${#STACK_DIR} <= 70)) && stack_mysql_can_enter "$STACK_DIR"; then
		STACK_SOCKET_DIR=$STACK_DIR/sockets
		STACK_DB_DIR=$STACK_DIR/mariadb
	else
		STACK_SOCKET_DIR=$STACK_RUNTIME_DIR
		STACK_DB_DIR=$STACK_RUNTIME_DIR/mariadb
	fi
	STACK_DB_SOCKET=$STACK_SOCKET_DIR/mariadb.sock
	STACK_POOL_SOCKET=$STACK_SOCKET_DIR/pool.sock
	# What the workers that Apache mod_fcgid starts as www-data read; see
	# stack_share_with_www_data.
	STACK_WORKER_BIN_DIR=$STACK_BIN_DIR
	STACK_WORKER_CONF=$STACK_CONF
	STACK_WORKER_IPC_DIR=$STACK_DIR/fcgid
}

stack_record_pid() {
	local order=$1 name=$2 pid=$3
	mkdir -p "$STACK_PID_DIR"
	echo "$pid" >"$STACK_PID_DIR/$order-$name.pid"
}

# Succeeds while PID runs as a process that is not a zombie.
stack_pid_alive() {
	local state
	kill -0 "$1" 2>/dev/null || return 1
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ $state != Z ]]
}

# Succeeds when PID's command line mentions this stack's state folder or its
# folder under /tmp, so that a PID reused by another program is never signalled.
stack_pid_is_ours() {
	local cmdline
	cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
	[[ $cmdline == *"$STACK_DIR"* || $cmdline == *"$STACK_RUNTIME_DIR"* ]]
}

# Prints the PIDs of every descendant of PID.
stack_descendants() {
	local child
	for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		echo "$child"
		stack_descendants "$child"
	done
}

# Sends TERM to PID, waits up to 10 s for it to exit, then sends KILL, and
# reaps it when it is a child of this shell.
stack_stop_pid() {
	local pid=$1 name=$2 tries
	if ! stack_pid_alive "$pid"; then
		wait "$pid" 2>/dev/null || true
		return 0
	fi
	if ! stack_pid_is_ours "$pid"; then
		stack_log "PID $pid recorded for $name now runs another program; leaving it alone"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for ((tries = 0; tries < 100; tries++)); do
		stack_pid_alive "$pid" || break
		sleep 0.1
	done
	if stack_pid_alive "$pid"; then
		stack_log "$name (PID $pid) still runs 10 s after TERM; sending KILL"
		kill -KILL "$pid" 2>/dev/null || true
		for ((tries = 0; tries < 50; tries++)); do
			stack_pid_alive "$pid" || break
			sleep 0.1
		done
	fi
	wait "$pid" 2>/dev/null || true
}

# Stops every process recorded under STACK_DIR, last started first.
stack_stop() {
	local files file index pid name descendants child stopped=no
	stack_set_paths || return 1
	[[ -d $STACK_PID_DIR ]] || return 0
	# The glob sorts by the order prefix; walk it backwards.
	files=("$STACK_PID_DIR"/*.pid)
	for ((index = ${#files[@]} - 1; index >= 0; index--)); do
		file=${files[index]}
		[[ -e $file ]] || continue
		stopped=yes
		pid=$(<"$file")
		name=$(basename "$file" .pid)
		name=${name#*-}
		# lighttpd stops the FastCGI workers it spawned; the descendants
		# are collected first so that a worker left behind is stopped too.
		descendants=$(stack_descendants "$pid")
		stack_stop_pid "$pid" "$name"
		for child in $descendants; do
			if stack_pid_alive "$child" && stack_pid_is_ours "$child"; then
				stack_stop_pid "$child" "$name worker"
			fi
		done
		rm -f "$file"
	done
	rm -rf -- "$STACK_RUNTIME_DIR"
	if [[ $stopped == yes ]]; then
		stack_log "stopped the stack in $STACK_DIR"
	fi
}

stack_write_secrets() {
	mkdir -p "$STACK_SECRET_DIR"
	chmod 700 "$STACK_SECRET_DIR"
	(
		umask 077
		stack_random_hex 24 >"$STACK_SECRET_DIR/db-password"
		stack_random_hex 32 >"$STACK_SECRET_DIR/pepper"
		echo "k1:$(stack_random_hex 32)" >"$STACK_SECRET_DIR/seal-keys"
		stack_random_hex 32 >"$STACK_SECRET_DIR/hs256-secret"
		# The service tokens' secret, distinct from the users' one.
		stack_random_hex 32 >"$STACK_SECRET_DIR/hs256-internal-secret"
	)
}

stack_write_mariadb_config() {
	mkdir -p "$STACK_DB_DIR/data" "$STACK_SOCKET_DIR"
	cat >"$STACK_DB_DIR/my.cnf" <<EOF
# A private MariaDB for one userops stack; generated by tests/lib/stack.sh.
[mysqld]
user = $STACK_MARIADB_USER
datadir = $STACK_DB_DIR/data
socket = $STACK_DB_SOCKET
port = $STACK_DB_PORT
bind-address = 127.0.0.1
pid-file = $STACK_DB_DIR/mariadbd.pid
log-error = $STACK_DB_DIR/error.log
skip-name-resolve
character-set-server = utf8mb4
innodb-buffer-pool-size = 64M
# Test data need not survive a power cut, and this spares a disk sync per commit.
innodb-flush-log-at-trx-commit = 2

[client]
socket = $STACK_DB_SOCKET
EOF
	if ((EUID == 0)); then
		chown -R "$STACK_MARIADB_USER:" "$STACK_DB_DIR" "$STACK_SOCKET_DIR"
	fi
}

# Runs SQL as the MariaDB root user over the socket (unix_socket auth).
stack_sql() {
	mariadb --no-defaults --socket="$STACK_DB_SOCKET" -u root --batch --skip-column-names -e "$1"
}

# Starts mariadbd with the stack's defaults file, waits until it responds to
# a ping on its socket, and records its PID. The data folder must exist.
stack_launch_mariadb() {
	local pid tries
	# setsid puts mariadbd in a session of its own, so that a signal to the
	# process group of the shell that started it (timeout stopping a test
	# file that restarted the database) does not reach it. In a shell
	# without job control setsid execs mariadbd and $! is mariadbd. Under
	# job control it forks first, and -w keeps it waiting, so $! stays
	# alive exactly as long as mariadbd does. The PID recorded at the end
	# comes from mariadbd's pid-file either way.
	setsid -w mariadbd --defaults-file="$STACK_DB_DIR/my.cnf" </dev/null >>"$STACK_DB_DIR/stdout.log" 2>&1 &
	pid=$!
	stack_record_pid 10 mariadb "$pid"

	for ((tries = 0; tries < 300; tries++)); do
		if mariadb-admin --no-defaults --socket="$STACK_DB_SOCKET" -u root ping >/dev/null 2>&1; then
			break
		fi
		if ! stack_pid_alive "$pid"; then
			stack_log "mariadbd exited at start; the end of $STACK_DB_DIR/error.log:"
			tail -n 20 "$STACK_DB_DIR/error.log" >&2
			return 1
		fi
		sleep 0.1
	done
	if ((tries == 300)); then
		stack_log "MariaDB did not respond to ping on $STACK_DB_SOCKET within 30 s; see $STACK_DB_DIR/error.log"
		return 1
	fi

	if [[ -s $STACK_DB_DIR/mariadbd.pid ]]; then
		pid=$(<"$STACK_DB_DIR/mariadbd.pid")
		stack_record_pid 10 mariadb "$pid"
	fi
	STACK_DB_PID=$pid
}

stack_start_mariadb() {
	local password
	stack_require_free_port "$STACK_DB_PORT" MariaDB || return 1
	stack_write_mariadb_config
	if ! mariadb-install-db --defaults-file="$STACK_DB_DIR/my.cnf" \
		--auth-root-authentication-method=socket --skip-test-db \
		>"$STACK_DB_DIR/install-db.log" 2>&1; then
		stack_log "mariadb-install-db failed; see $STACK_DB_DIR/install-db.log"
		return 1
	fi
	stack_launch_mariadb || return 1

	password=$(<"$STACK_SECRET_DIR/db-password")
	stack_sql "CREATE DATABASE userops CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
		CREATE USER 'userops'@'localhost' IDENTIFIED BY '$password';
		GRANT ALL PRIVILEGES ON userops.* TO 'userops'@'localhost';"
	stack_log "MariaDB ready on $STACK_DB_SOCKET and 127.0.0.1:$STACK_DB_PORT (PID $STACK_DB_PID)"
}

# Stops the stack's MariaDB alone, by its recorded PID, and waits until the
# process is gone (TERM, then KILL after 10 s). Needs STACK_DIR.
stack_db_stop() {
	local file pid
	stack_set_paths || return 1
	file=$STACK_PID_DIR/10-mariadb.pid
	if [[ ! -r $file ]]; then
		stack_log "no MariaDB PID recorded in $file"
		return 1
	fi
	pid=$(<"$file")
	stack_stop_pid "$pid" mariadb
	if stack_pid_alive "$pid"; then
		stack_log "mariadbd (PID $pid) did not exit"
		return 1
	fi
	stack_log "MariaDB stopped (PID $pid)"
}

# Starts the stack's MariaDB again with the same defaults file and data, and
# waits until it responds on its socket. Needs STACK_DIR.
stack_db_start() {
	local file
	stack_set_paths || return 1
	file=$STACK_PID_DIR/10-mariadb.pid
	if [[ -r $file ]] && stack_pid_alive "$(<"$file")"; then
		stack_log "MariaDB already runs (PID $(<"$file"))"
		return 1
	fi
	stack_launch_mariadb || return 1
	stack_log "MariaDB ready again on $STACK_DB_SOCKET (PID $STACK_DB_PID)"
}

stack_start_smtp() {
	local pid tries
	stack_require_free_port "$STACK_SMTP_PORT" "the SMTP sink" || return 1
	# The Mailbox handler creates tmp/, new/ and cur/ only when the folder
	# itself is missing, so all four are made here.
	mkdir -p "$STACK_MAILDIR"/{tmp,new,cur}
	# Debian's python3 has aiosmtpd; a python3 earlier on PATH may not.
	/usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$STACK_SMTP_PORT" \
		-c aiosmtpd.handlers.Mailbox "$STACK_MAILDIR" \
		</dev/null >>"$STACK_DIR/smtp.log" 2>&1 &
	pid=$!
	stack_record_pid 20 smtp "$pid"
	for ((tries = 0; tries < 100; tries++)); do
		stack_port_open "$STACK_SMTP_PORT" && break
		if ! stack_pid_alive "$pid"; then
			stack_log "the SMTP sink exited at start; see $STACK_DIR/smtp.log"
			return 1
		fi
		sleep 0.1
	done
	if ((tries == 100)); then
		stack_log "the SMTP sink did not listen on 127.0.0.1:$STACK_SMTP_PORT within 10 s"
		return 1
	fi
	stack_log "SMTP sink ready on 127.0.0.1:$STACK_SMTP_PORT, storing mail in $STACK_MAILDIR (PID $pid)"
}

stack_write_config() {
	cat >"$STACK_CONF" <<EOF
# userops configuration for the stack in $STACK_DIR; generated by tests/lib/stack.sh.

[server]
base_path =

[database]
socket = $STACK_DB_SOCKET
name = userops
user = userops
password_file = $STACK_SECRET_DIR/db-password

[auth]
algorithms = HS256
hs_secret_file = $STACK_SECRET_DIR/hs256-secret
leeway = 30

[operations]
code_length = 6
lifetime = 600
max_attempts = 5
accept_previous_code = yes
resend_cooldown = $STACK_RESEND_COOLDOWN
max_resends = 3
totp_window = 1
pepper_file = $STACK_SECRET_DIR/pepper

[seal]
key_file = $STACK_SECRET_DIR/seal-keys

[smtp]
host = 127.0.0.1
port = $STACK_SMTP_PORT
tls = none
from = userops@example.com

[mailer]
poll_interval_ms = 200
templates_dir = $STACK_REPO/etc/templates

[internal]
algorithms = HS256
hs_secret_file = $STACK_SECRET_DIR/hs256-internal-secret
issuer =
audience = $STACK_INTERNAL_AUDIENCE

[log]
target = stderr
level = info
EOF
	if [[ -n $STACK_EXTRA_CONF ]]; then
		printf '\n%s\n' "$STACK_EXTRA_CONF" >>"$STACK_CONF"
	fi
}

# Writes userops-strict.conf: userops.conf with accept_previous_code = no.
# The second front end also leaves [internal] audience empty, so that the
# 404002 of unconfigured service routes can be tested on it.
stack_write_strict_config() {
	sed -e 's/^accept_previous_code = yes$/accept_previous_code = no/' \
		-e 's/^# userops configuration for/# userops configuration (accept_previous_code = no) for/' \
		-e "s/^audience = $STACK_INTERNAL_AUDIENCE\$/audience =/" \
		"$STACK_CONF" >"$STACK_STRICT_CONF"
	if ! grep -q '^accept_previous_code = no$' "$STACK_STRICT_CONF"; then
		stack_log "$STACK_STRICT_CONF: could not set accept_previous_code = no"
		return 1
	fi
	if grep -q "^audience = $STACK_INTERNAL_AUDIENCE\$" "$STACK_STRICT_CONF"; then
		stack_log "$STACK_STRICT_CONF: could not leave [internal] audience empty"
		return 1
	fi
}

# Runs userops-ctl against this stack's configuration.
stack_ctl() {
	USEROPS_SQL_DIR=$STACK_REPO/sql "$STACK_BIN_DIR/userops-ctl" -c "$STACK_CONF" "$@"
}

stack_migrate() {
	if ! stack_ctl migrate --dir "$STACK_REPO/sql" >"$STACK_DIR/migrate.log" 2>&1; then
		stack_log "userops-ctl migrate failed:"
		cat "$STACK_DIR/migrate.log" >&2
		return 1
	fi
	stack_log "schema migrated"
}

# Writes the lighttpd configuration FILE: listen on 127.0.0.1:PORT, log to
# ERROR_LOG and ACCESS_LOG, and route as the fastcgi.server value FASTCGI.
stack_write_lighttpd_config() {
	local file=$1 port=$2 error_log=$3 access_log=$4 fastcgi=$5
	mkdir -p "$STACK_DIR/www"
	cat >"$file" <<EOF
# lighttpd for the userops stack in $STACK_DIR; generated by tests/lib/stack.sh.
server.modules = ("mod_fastcgi", "mod_accesslog")
server.bind = "127.0.0.1"
server.port = $port
server.document-root = "$STACK_DIR/www"
server.errorlog = "$error_log"
accesslog.filename = "$access_log"
# In KiB: 1 MiB, as the other front ends allow, above userops' own [server]
# max_body, so that userops itself returns 413001 for a body between the two.
server.max-request-size = 1024

fastcgi.server = $fastcgi
EOF
}

# Prints one fastcgi.server entry: PREFIX served by PROCS userops-fcgi
# workers that read CONF and listen on SOCKET-N.
stack_fastcgi_entry() {
	local prefix=$1 conf=$2 socket=$3 procs=$4
	cat <<EOF
	"$prefix" => ((
		"bin-path" => "$STACK_BIN_DIR/userops-fcgi -c $conf",
		"socket" => "$socket",
		"check-local" => "disable",
		"max-procs" => $procs,
	)),
EOF
}

# Starts lighttpd in the foreground with the configuration FILE, records
# its PID as ORDER-NAME, and waits until GET URL/health returns 200.
# lighttpd's stdout and stderr, which its FastCGI workers inherit, are
# appended to ERROR_LOG, the file that server.errorlog names too.
stack_launch_lighttpd() {
	local name=$1 order=$2 file=$3 url=$4 error_log=$5 pid tries status
	if ! lighttpd -tt -f "$file" >"$STACK_DIR/$name-check.log" 2>&1; then
		stack_log "lighttpd rejected $file:"
		cat "$STACK_DIR/$name-check.log" >&2
		return 1
	fi
	lighttpd -D -f "$file" </dev/null >>"$error_log" 2>&1 &
	pid=$!
	stack_record_pid "$order" "$name" "$pid"
	for ((tries = 0; tries < 100; tries++)); do
		status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/health" || true)
		[[ $status == 200 ]] && break
		if ! stack_pid_alive "$pid"; then
			stack_log "$name exited at start; the end of $error_log:"
			tail -n 20 "$error_log" >&2
			return 1
		fi
		sleep 0.1
	done
	if ((tries == 100)); then
		stack_log "GET $url/health did not return 200 within 10 s (last status $status); the end of $error_log:"
		tail -n 20 "$error_log" >&2
		return 1
	fi
	STACK_LIGHTTPD_PID=$pid
}

stack_start_lighttpd() {
	local fastcgi
	stack_require_free_port "$STACK_HTTP_PORT" lighttpd || return 1
	# lighttpd takes the first prefix that matches, so /api/ comes before /.
	fastcgi="(
$(stack_fastcgi_entry /api/ "$STACK_CONF" "$STACK_SOCKET_DIR/fcgi-api.sock" 4)
$(stack_fastcgi_entry / "$STACK_CONF" "$STACK_SOCKET_DIR/fcgi.sock" 4)
)"
	stack_write_lighttpd_config "$STACK_DIR/lighttpd.conf" "$STACK_HTTP_PORT" \
		"$STACK_ERROR_LOG" "$STACK_DIR/lighttpd-access.log" "$fastcgi"
	stack_launch_lighttpd lighttpd 30 "$STACK_DIR/lighttpd.conf" "$STACK_URL" "$STACK_ERROR_LOG" || return 1
	stack_log "lighttpd ready on $STACK_URL with userops-fcgi at / and /api/ (PID $STACK_LIGHTTPD_PID)"
}

# Starts the second lighttpd, whose two workers at / read userops-strict.conf.
stack_start_strict_lighttpd() {
	local fastcgi
	stack_require_free_port "$STACK_STRICT_HTTP_PORT" "the second lighttpd" || return 1
	stack_write_strict_config || return 1
	fastcgi="(
$(stack_fastcgi_entry / "$STACK_STRICT_CONF" "$STACK_SOCKET_DIR/strict.sock" 2)
)"
	stack_write_lighttpd_config "$STACK_DIR/lighttpd-strict.conf" "$STACK_STRICT_HTTP_PORT" \
		"$STACK_STRICT_ERROR_LOG" "$STACK_DIR/lighttpd-strict-access.log" "$fastcgi"
	stack_launch_lighttpd lighttpd-strict 35 "$STACK_DIR/lighttpd-strict.conf" \
		"$STACK_STRICT_URL" "$STACK_STRICT_ERROR_LOG" || return 1
	stack_log "second lighttpd ready on $STACK_STRICT_URL with accept_previous_code = no (PID $STACK_LIGHTTPD_PID)"
}

# Succeeds when the front end connects to the pool's socket rather than
# spawning the workers itself.
stack_frontend_uses_pool() {
	case $STACK_FRONTEND in
	lighttpd-pool | nginx | apache-proxy-fcgi) return 0 ;;
	*) return 1 ;;
	esac
}

# Waits up to TENTHS tenths of a second for the unix socket PATH to appear
# while PID runs.
stack_wait_socket() {
	local path=$1 pid=$2 tenths=$3 tries
	for ((tries = 0; tries < tenths; tries++)); do
		[[ -S $path ]] && return 0
		stack_pid_alive "$pid" || return 1
		sleep 0.1
	done
	return 1
}

# Starts the userops-fcgi pool on STACK_POOL_SOCKET: userops-fcgi itself
# with [server] listen when it binds the socket, spawn-fcgi otherwise. The
# socket's group becomes www-data with mode 0660, as the examples in etc/
# expect, so that Apache's and nginx's workers may connect.
stack_start_pool() {
	local pid file index=0
	sed -e "s|^\[server\]\$|[server]\nlisten = unix:$STACK_POOL_SOCKET\nworkers = $STACK_POOL_WORKERS|" \
		"$STACK_CONF" >"$STACK_POOL_CONF"
	"$STACK_BIN_DIR/userops-fcgi" -c "$STACK_POOL_CONF" </dev/null >>"$STACK_POOL_LOG" 2>&1 &
	pid=$!
	stack_record_pid 25 pool "$pid"
	if stack_wait_socket "$STACK_POOL_SOCKET" "$pid" 30; then
		STACK_POOL_KIND=userops-fcgi
	else
		stack_stop_pid "$pid" pool
		rm -f "$STACK_PID_DIR/25-pool.pid" "$STACK_POOL_SOCKET"
		# TODO: drop this fallback once every build of userops-fcgi binds [server] listen.
		stack_log "userops-fcgi did not bind $STACK_POOL_SOCKET within 3 s; starting $STACK_POOL_WORKERS workers with spawn-fcgi"
		file=$STACK_DIR/spawn-fcgi.pids
		# spawn-fcgi sends the workers' stderr to /dev/null, so a shell
		# points it at the pool's log before it becomes userops-fcgi.
		# shellcheck disable=SC2016
		if ! spawn-fcgi -s "$STACK_POOL_SOCKET" -F "$STACK_POOL_WORKERS" -P "$file" \
			-- /bin/sh -c 'exec "$0" -c "$1" 2>>"$2"' \
			"$STACK_BIN_DIR/userops-fcgi" "$STACK_CONF" "$STACK_POOL_LOG" >>"$STACK_POOL_LOG" 2>&1; then
			stack_log "spawn-fcgi failed; see $STACK_POOL_LOG"
			return 1
		fi
		# spawn-fcgi ends the last PID without a newline.
		while read -r pid || [[ -n $pid ]]; do
			stack_record_pid 25 "pool-$index" "$pid"
			index=$((index + 1))
		done <"$file"
		STACK_POOL_KIND=spawn-fcgi
	fi
	chgrp www-data "$STACK_POOL_SOCKET" && chmod 0660 "$STACK_POOL_SOCKET" || return 1
	stack_log "userops-fcgi pool ($STACK_POOL_KIND, $STACK_POOL_WORKERS workers) on $STACK_POOL_SOCKET"
}

# Writes the front end's configuration FILE from the example etc/EXAMPLE,
# with the stack's port, sockets, programs and files in place of the
# installed paths.
stack_write_frontend_config() {
	local example=$STACK_REPO/etc/$1 file=$2
	sed -e "s|127\.0\.0\.1:8080|127.0.0.1:$STACK_HTTP_PORT|" \
		-e "s|^server\.port = 8080\$|server.port = $STACK_HTTP_PORT|" \
		-e "s|/run/userops/fcgi\.sock|$STACK_POOL_SOCKET|g" \
		-e "s|/usr/local/bin/userops-fcgi|$STACK_WORKER_BIN_DIR/userops-fcgi|g" \
		-e "s|<Directory /usr/local/bin>|<Directory $STACK_WORKER_BIN_DIR>|" \
		-e "s|/usr/local/etc/userops/userops\.conf|$STACK_WORKER_CONF|g" \
		-e "s|/var/log/[a-z0-9]*/userops-error\.log|$STACK_FRONTEND_LOG|" \
		-e "s|/var/log/[a-z0-9]*/userops-access\.log|$STACK_DIR/$STACK_FRONTEND-access.log|" \
		-e "s|/run/[a-z0-9/-]*userops[a-z-]*\.pid|$STACK_DIR/$STACK_FRONTEND.pid|" \
		-e "s|/run/apache2/fcgid|$STACK_WORKER_IPC_DIR|g" \
		-e "s|/var/lib/nginx|$STACK_DIR/nginx-temp|g" \
		-e "s|/var/www/html|$STACK_DIR/www|" \
		-e '/^server\.\(username\|groupname\)/d' \
		"$example" >"$file"
	if grep -n -e /usr/local -e '/run/userops' -e '/var/log' -e ':8080' "$file" >&2; then
		stack_log "$file: the lines above still name an installed path or port 8080"
		return 1
	fi
}

# Starts the front end COMMAND..., which runs in the foreground, records its
# PID and waits until GET STACK_URL/health returns 200.
stack_launch_frontend() {
	local pid tries status
	"$@" </dev/null >>"$STACK_FRONTEND_LOG" 2>&1 &
	pid=$!
	stack_record_pid 30 "$STACK_FRONTEND" "$pid"
	for ((tries = 0; tries < 100; tries++)); do
		status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$STACK_URL/health" || true)
		[[ $status == 200 ]] && break
		if ! stack_pid_alive "$pid"; then
			stack_log "$STACK_FRONTEND exited at start; the end of $STACK_FRONTEND_LOG:"
			tail -n 20 "$STACK_FRONTEND_LOG" >&2
			return 1
		fi
		sleep 0.1
	done
	if ((tries == 100)); then
		stack_log "GET $STACK_URL/health did not return 200 within 10 s (last status $status); the end of $STACK_FRONTEND_LOG:"
		tail -n 20 "$STACK_FRONTEND_LOG" >&2
		return 1
	fi
	stack_log "$STACK_FRONTEND ready on $STACK_URL at / and /api/ (PID $pid)"
}

# Lets Apache's User (www-data) read what the workers that mod_fcgid starts
# read: the program, the configuration, its secret files and the templates.
# When www-data cannot reach the state folder or the build (a clone in a
# private folder), they are copied to $STACK_RUNTIME_DIR/www-data, which
# stack_stop removes, and the STACK_WORKER_* paths point there.
stack_share_with_www_data() {
	local share=$STACK_RUNTIME_DIR/www-data
	chgrp -R www-data "$STACK_SECRET_DIR" "$STACK_CONF"
	chmod 750 "$STACK_SECRET_DIR"
	chmod 640 "$STACK_SECRET_DIR"/* "$STACK_CONF"
	if runuser -u www-data -- test -r "$STACK_SECRET_DIR/pepper" &&
		runuser -u www-data -- test -x "$STACK_BIN_DIR/userops-fcgi" &&
		runuser -u www-data -- test -r "$STACK_REPO/etc/templates/en/code.txt"; then
		return 0
	fi

	rm -rf -- "$share"
	# Apache makes the fcgid folder itself and gives it to www-data.
	mkdir -p "$share/bin"
	cp -- "$STACK_BIN_DIR/userops-fcgi" "$share/bin/"
	cp -r -- "$STACK_SECRET_DIR" "$share/secrets"
	cp -r -- "$STACK_REPO/etc/templates" "$share/templates"
	sed -e "s|$STACK_SECRET_DIR/|$share/secrets/|g" \
		-e "s|^templates_dir = .*|templates_dir = $share/templates|" \
		"$STACK_CONF" >"$share/userops.conf"
	chgrp -R www-data "$share"
	chmod -R g+rX,o-rwx "$share"
	chmod 711 "$STACK_RUNTIME_DIR"
	STACK_WORKER_BIN_DIR=$share/bin
	STACK_WORKER_CONF=$share/userops.conf
	STACK_WORKER_IPC_DIR=$share/fcgid
	if ! runuser -u www-data -- test -r "$share/secrets/pepper" ||
		! runuser -u www-data -- test -x "$share/bin/userops-fcgi"; then
		stack_log "www-data cannot reach $share either; use a state folder and build outside private homes"
		return 1
	fi
	stack_log "www-data cannot reach $STACK_DIR or $STACK_BIN_DIR, so the workers read a copy in $share"
}

# Starts the front end that STACK_FRONTEND names, and the pool first when
# that front end connects to one.
stack_start_frontend() {
	local file=$STACK_DIR/$STACK_FRONTEND.conf
	stack_require_free_port "$STACK_HTTP_PORT" "$STACK_FRONTEND" || return 1
	mkdir -p "$STACK_DIR/www"
	if stack_frontend_uses_pool; then
		stack_start_pool || return 1
	fi
	case $STACK_FRONTEND in
	lighttpd)
		stack_start_lighttpd
		;;
	lighttpd-pool)
		stack_write_frontend_config lighttpd-pool.conf "$file" || return 1
		lighttpd -tt -f "$file" >&2 || return 1
		stack_launch_frontend lighttpd -D -f "$file"
		;;
	nginx)
		stack_write_frontend_config nginx.conf "$file" || return 1
		mkdir -p "$STACK_DIR/nginx-temp"
		chown www-data: "$STACK_DIR/nginx-temp"
		nginx -t -q -c "$file" >&2 || return 1
		stack_launch_frontend nginx -c "$file" -g 'daemon off;'
		;;
	apache-fcgid | apache-proxy-fcgi)
		if [[ $STACK_FRONTEND == apache-fcgid ]]; then
			stack_share_with_www_data || return 1
		fi
		stack_write_frontend_config "$STACK_FRONTEND.conf" "$file" || return 1
		if ! apache2 -t -f "$file" >"$STACK_DIR/$STACK_FRONTEND-check.log" 2>&1; then
			stack_log "apache2 rejected $file:"
			cat "$STACK_DIR/$STACK_FRONTEND-check.log" >&2
			return 1
		fi
		stack_launch_frontend apache2 -f "$file" -DFOREGROUND
		;;
	*)
		stack_log "STACK_FRONTEND=$STACK_FRONTEND is not one of lighttpd, lighttpd-pool, nginx, apache-fcgid, apache-proxy-fcgi"
		return 1
		;;
	esac
}

stack_start_mailer() {
	local pid
	"$STACK_BIN_DIR/userops-mailer" -c "$STACK_CONF" </dev/null >>"$STACK_MAILER_LOG" 2>&1 &
	pid=$!
	stack_record_pid 40 mailer "$pid"
	sleep 0.2
	if ! stack_pid_alive "$pid"; then
		stack_log "userops-mailer exited at start; $STACK_MAILER_LOG says:"
		tail -n 20 "$STACK_MAILER_LOG" >&2
		return 1
	fi
	stack_log "userops-mailer running (PID $pid), logging to $STACK_MAILER_LOG"
}

stack_write_env() {
	{
		printf 'USEROPS_STACK_DIR=%q\n' "$STACK_DIR"
		printf 'USEROPS_URL=%q\n' "$STACK_URL"
		printf 'USEROPS_CONF=%q\n' "$STACK_CONF"
		printf 'USEROPS_BIN_DIR=%q\n' "$STACK_BIN_DIR"
		printf 'USEROPS_SQL_DIR=%q\n' "$STACK_REPO/sql"
		printf 'USEROPS_MAILDIR=%q\n' "$STACK_MAILDIR"
		printf 'USEROPS_ERROR_LOG=%q\n' "$STACK_ERROR_LOG"
		printf 'USEROPS_MAILER_LOG=%q\n' "$STACK_MAILER_LOG"
		printf 'USEROPS_DB_SOCKET=%q\n' "$STACK_DB_SOCKET"
		printf 'USEROPS_SOCKET_DIR=%q\n' "$STACK_SOCKET_DIR"
		printf 'USEROPS_FCGID_DIR=%q\n' "$STACK_WORKER_IPC_DIR"
		printf 'USEROPS_SECRET_DIR=%q\n' "$STACK_SECRET_DIR"
		printf 'USEROPS_RESEND_COOLDOWN=%q\n' "$STACK_RESEND_COOLDOWN"
		printf 'USEROPS_CTL_LOG=%q\n' "$STACK_CTL_LOG"
		printf 'USEROPS_INTERNAL_AUDIENCE=%q\n' "$STACK_INTERNAL_AUDIENCE"
		printf 'USEROPS_FRONTEND=%q\n' "$STACK_FRONTEND"
		printf 'USEROPS_FRONTEND_LOG=%q\n' "$STACK_FRONTEND_LOG"
		printf 'USEROPS_POOL_SOCKET=%q\n' "$(stack_frontend_uses_pool && echo "$STACK_POOL_SOCKET")"
		if [[ $STACK_STRICT == yes ]]; then
			printf 'USEROPS_URL_STRICT=%q\n' "$STACK_STRICT_URL"
			printf 'USEROPS_CONF_STRICT=%q\n' "$STACK_STRICT_CONF"
			printf 'USEROPS_ERROR_LOG_STRICT=%q\n' "$STACK_STRICT_ERROR_LOG"
		fi
	} >"$STACK_DIR/stack.env"
}

# Stops whatever ran under STACK_DIR before, empties it, and starts the
# whole stack. Returns non-zero, with the cause on stderr, when a part fails
# to start; the parts already started stay recorded for stack_stop.
stack_start() {
	local program
	stack_set_paths || return 1
	for program in userops-fcgi userops-mailer userops-ctl; do
		if [[ ! -x $STACK_BIN_DIR/$program ]]; then
			stack_log "$STACK_BIN_DIR/$program is missing; run scripts/build first"
			return 1
		fi
	done
	stack_stop || return 1
	stack_require_free_port "$STACK_DB_PORT" MariaDB || return 1
	stack_require_free_port "$STACK_SMTP_PORT" "the SMTP sink" || return 1
	stack_require_free_port "$STACK_HTTP_PORT" lighttpd || return 1
	if [[ $STACK_STRICT == yes ]]; then
		stack_require_free_port "$STACK_STRICT_HTTP_PORT" "the second lighttpd" || return 1
	fi
	rm -rf -- "$STACK_DIR" "$STACK_RUNTIME_DIR"
	# mariadbd runs as mysql and must pass through every new folder.
	(umask 022 && mkdir -p "$STACK_DIR")

	stack_write_secrets
	stack_start_mariadb || return 1
	stack_start_smtp || return 1
	stack_write_config
	stack_migrate || return 1
	stack_start_frontend || return 1
	if [[ $STACK_STRICT == yes ]]; then
		stack_start_strict_lighttpd || return 1
	fi
	stack_start_mailer || return 1
	stack_write_env
}
