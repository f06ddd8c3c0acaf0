#!/bin/bash
# Starts or stops the PHP peer of userops: php-fpm with php-fpm.conf and a
# lighttpd in front of it with lighttpd-php.conf, both in the foreground of
# their own processes, recorded by PID under PHP_PEER_DIR and stopped by
# that PID only.
#
#   run.sh START | STOP
#
#   PHP_PEER_DIR               state folder (required): configurations, logs,
#                              PID files and, by default, the socket
#   PHP_PEER_USEROPS_CONF      the userops.conf whose [server] max_body,
#                              [database], [auth], [operations], [seal] and
#                              [internal] audience the peer uses (required by START)
#   PHP_PEER_HTTP_PORT         lighttpd's port on 127.0.0.1 (default 27033)
#   PHP_PEER_LIGHTTPD          no starts php-fpm alone, for a front end of
#                              the caller's that includes lighttpd-php.conf (default yes)
#   PHP_PEER_SOCKET            php-fpm's unix socket (default PHP_PEER_DIR/php-fpm.sock)
#   PHP_PEER_WORKERS           pm.max_children, the php-fpm children (default 4)
#   PHP_PEER_PERSISTENT        1 keeps one MariaDB connection per child
#                              between requests, 0 connects per request (default 1)
#   PHP_PEER_EMULATE_PREPARES  0 runs server-side prepared statements, as
#                              userops does; 1 lets PDO quote the values
#                              into the SQL text (default 0)
#   PHP_PEER_LOG_REQUESTS      1 writes one line per request to
#                              PHP_PEER_DIR/php-error.log, as userops logs
#                              one line per request (default 1)
#
# START returns once GET /health through lighttpd answers 200 (or, with
# PHP_PEER_LIGHTTPD=no, once the socket exists). The php-fpm children are
# the children of the PID in PHP_PEER_DIR/pids/php-fpm.pid.

set -euo pipefail

PEER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PHP_FPM=${PHP_FPM:-/usr/sbin/php-fpm8.2}
PHP_INI=${PHP_INI:-/etc/php/8.2/fpm/php.ini}

peer_log() {
	echo "php-peer: $*" >&2
}

peer_set_paths() {
	if [[ -z ${PHP_PEER_DIR:-} || $PHP_PEER_DIR == / ]]; then
		peer_log "PHP_PEER_DIR must name a state folder"
		return 1
	fi
	PHP_PEER_DIR=$(mkdir -p "$PHP_PEER_DIR" && cd "$PHP_PEER_DIR" && pwd)
	PHP_PEER_HTTP_PORT=${PHP_PEER_HTTP_PORT:-27033}
	PHP_PEER_LIGHTTPD=${PHP_PEER_LIGHTTPD:-yes}
	PHP_PEER_SOCKET=${PHP_PEER_SOCKET:-$PHP_PEER_DIR/php-fpm.sock}
	PHP_PEER_WORKERS=${PHP_PEER_WORKERS:-4}
	PEER_PID_DIR=$PHP_PEER_DIR/pids
}

# Prints TEXT without leading and trailing blanks.
trim() {
	local text=$1
	text=${text#"${text%%[![:blank:]]*}"}
	printf '%s' "${text%"${text##*[![:blank:]]}"}"
}

# Prints the value of KEY in [SECTION] of the INI file FILE, without
# surrounding white space or an inline "; comment", or nothing when unset.
ini_value() {
	awk -v section="$2" -v key="$3" '
		/^[ \t]*[#;]/ { next }
		/^[ \t]*\[/ {
			name = $0
			gsub(/^[ \t]*\[|\][ \t]*$/, "", name)
			current = name
			next
		}
		current == section && index($0, "=") {
			name = substr($0, 1, index($0, "=") - 1)
			gsub(/^[ \t]+|[ \t]+$/, "", name)
			if (name != key)
				next
			value = substr($0, index($0, "=") + 1)
			sub(/[ \t]+;.*$/, "", value)
			gsub(/^[ \t]+|[ \t]+$/, "", value)
			found = value
		}
		END { printf "%s", found }
	' "$1"
}

# Exports the USEROPS_PEER_* variables that php-fpm.conf passes to the
# scripts, from the userops configuration.
peer_read_userops_conf() {
	local conf=$1 secret algorithms
	if [[ ! -r $conf ]]; then
		peer_log "cannot read PHP_PEER_USEROPS_CONF=$conf"
		return 1
	fi
	algorithms=$(ini_value "$conf" auth algorithms)
	if [[ -n $algorithms && $algorithms != HS256 ]]; then
		peer_log "[auth] algorithms = $algorithms in $conf: the PHP peer verifies HS256 alone"
		return 1
	fi

	# The first item of hs_secret_file, "KID=PATH" or "PATH"; a KID contains no '/'.
	secret=$(ini_value "$conf" auth hs_secret_file)
	secret=${secret%%,*}
	export USEROPS_PEER_HS_KEY_ID=
	if [[ $secret == *=* && ${secret%%=*} != */* ]]; then
		USEROPS_PEER_HS_KEY_ID=$(trim "${secret%%=*}")
		secret=${secret#*=}
	fi
	export USEROPS_PEER_HS_SECRET_FILE
	USEROPS_PEER_HS_SECRET_FILE=$(trim "$secret")

	# Each line: the variable, then the section and key of userops.conf it takes.
	# [internal] audience becomes an excluded audience, because userops
	# rejects a user token that names the service routes' audience.
	local variable section key
	while read -r variable section key; do
		printf -v "$variable" '%s' "$(ini_value "$conf" "$section" "$key")"
		export "${variable?}"
	done <<'EOF'
USEROPS_PEER_DB_SOCKET database socket
USEROPS_PEER_DB_HOST database host
USEROPS_PEER_DB_PORT database port
USEROPS_PEER_DB_NAME database name
USEROPS_PEER_DB_USER database user
USEROPS_PEER_DB_PASSWORD_FILE database password_file
USEROPS_PEER_LEEWAY auth leeway
USEROPS_PEER_ISSUER auth issuer
USEROPS_PEER_AUDIENCE auth audience
USEROPS_PEER_EXCLUDED_AUDIENCE internal audience
USEROPS_PEER_PEPPER_FILE operations pepper_file
USEROPS_PEER_SEAL_KEY_FILE seal key_file
USEROPS_PEER_CODE_LENGTH operations code_length
USEROPS_PEER_MAX_ATTEMPTS operations max_attempts
USEROPS_PEER_ACCEPT_PREVIOUS_CODE operations accept_previous_code
USEROPS_PEER_RESEND_COOLDOWN operations resend_cooldown
USEROPS_PEER_MAX_RESENDS operations max_resends
USEROPS_PEER_MAX_BODY server max_body
EOF
	export USEROPS_PEER_DB_PERSISTENT=${PHP_PEER_PERSISTENT:-1}
	export USEROPS_PEER_EMULATE_PREPARES=${PHP_PEER_EMULATE_PREPARES:-0}
	export USEROPS_PEER_LOG_REQUESTS=${PHP_PEER_LOG_REQUESTS:-1}

	# php-fpm starts without these, so their absence is reported here instead of on the first request.
	local name
	for name in USEROPS_PEER_HS_SECRET_FILE USEROPS_PEER_PEPPER_FILE USEROPS_PEER_SEAL_KEY_FILE \
		USEROPS_PEER_DB_PASSWORD_FILE; do
		if [[ ! -r ${!name} ]]; then
			peer_log "$name=${!name} from $conf is not a readable file"
			return 1
		fi
	done
}

# Succeeds while PID runs as a process that is not a zombie.
peer_pid_alive() {
	local state
	kill -0 "$1" 2>/dev/null || return 1
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ $state != Z ]]
}

# Succeeds when PID's command line names this peer's state folder, so that
# a PID reused by another program is never signalled.
peer_pid_is_ours() {
	local cmdline
	cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
	[[ $cmdline == *"$PHP_PEER_DIR"* ]]
}

# Sends TERM to the recorded PID NAME, waits up to 10 s, then sends KILL.
peer_stop_one() {
	local name=$1 file=$PEER_PID_DIR/$1.pid pid tries
	[[ -r $file ]] || return 0
	pid=$(<"$file")
	if peer_pid_alive "$pid" && ! peer_pid_is_ours "$pid"; then
		peer_log "PID $pid recorded for $name now runs another program; leaving it alone"
	elif peer_pid_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((tries = 0; tries < 100; tries++)); do
			peer_pid_alive "$pid" || break
			sleep 0.1
		done
		if peer_pid_alive "$pid"; then
			peer_log "$name (PID $pid) still runs 10 s after TERM; sending KILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$file"
}

peer_stop() {
	local recorded=no
	if [[ -e $PEER_PID_DIR/lighttpd.pid || -e $PEER_PID_DIR/php-fpm.pid ]]; then
		recorded=yes
	fi
	peer_stop_one lighttpd
	peer_stop_one php-fpm
	rm -f "$PHP_PEER_SOCKET"
	if [[ $recorded == yes ]]; then
		peer_log "stopped the PHP peer in $PHP_PEER_DIR"
	fi
}

peer_start_php_fpm() {
	local pid tries
	local -a root_flag=()

	cp "$PEER_ROOT/php-fpm.conf" "$PHP_PEER_DIR/php-fpm.conf"
	# The pool is the file's last section, so these lines belong to it.
	local name
	for name in "${!USEROPS_PEER_@}"; do
		if [[ -n ${!name} ]]; then
			printf 'env[%s] = "%s"\n' "$name" "${!name}" >>"$PHP_PEER_DIR/php-fpm.conf"
		fi
	done
	export PHP_PEER_DIR PHP_PEER_SOCKET PHP_PEER_WORKERS

	# php-fpm refuses to run as root without -R. Its children then run as
	# the caller, as the userops-fcgi workers that a root lighttpd spawns do.
	((EUID == 0)) && root_flag=(-R)
	if ! "$PHP_FPM" -t -y "$PHP_PEER_DIR/php-fpm.conf" -c "$PHP_INI" "${root_flag[@]}" \
		>"$PHP_PEER_DIR/php-fpm-check.log" 2>&1; then
		peer_log "php-fpm rejected $PHP_PEER_DIR/php-fpm.conf:"
		cat "$PHP_PEER_DIR/php-fpm-check.log" >&2
		return 1
	fi

	rm -f "$PHP_PEER_SOCKET"
	"$PHP_FPM" -F -y "$PHP_PEER_DIR/php-fpm.conf" -c "$PHP_INI" "${root_flag[@]}" \
		</dev/null >>"$PHP_PEER_DIR/php-fpm.log" 2>&1 &
	pid=$!
	echo "$pid" >"$PEER_PID_DIR/php-fpm.pid"
	for ((tries = 0; tries < 100; tries++)); do
		[[ -S $PHP_PEER_SOCKET ]] && break
		if ! peer_pid_alive "$pid"; then
			peer_log "php-fpm exited at start; the end of $PHP_PEER_DIR/php-fpm.log:"
			tail -n 20 "$PHP_PEER_DIR/php-fpm.log" >&2
			return 1
		fi
		sleep 0.1
	done
	if [[ ! -S $PHP_PEER_SOCKET ]]; then
		peer_log "php-fpm did not create $PHP_PEER_SOCKET within 10 s"
		return 1
	fi
	peer_log "php-fpm ready on $PHP_PEER_SOCKET with $PHP_PEER_WORKERS children (PID $pid)"
}

peer_start_lighttpd() {
	local conf=$PHP_PEER_DIR/lighttpd.conf pid tries status=000
	cat >"$conf" <<EOF
# lighttpd for the PHP peer in $PHP_PEER_DIR; generated by bench/peers/php/run.sh.
server.modules = ("mod_accesslog")
server.bind = "127.0.0.1"
server.port = $PHP_PEER_HTTP_PORT
server.errorlog = "$PHP_PEER_DIR/lighttpd-error.log"
accesslog.filename = "$PHP_PEER_DIR/lighttpd-access.log"
# In KiB, as in tests/lib/stack.sh, above [server] max_body, so that the
# peer itself returns 413001 for a body between the two.
server.max-request-size = 1024

var.php_peer_root = "$PEER_ROOT"
var.php_peer_socket = "$PHP_PEER_SOCKET"
include "$PEER_ROOT/lighttpd-php.conf"
EOF
	if ! lighttpd -tt -f "$conf" >"$PHP_PEER_DIR/lighttpd-check.log" 2>&1; then
		peer_log "lighttpd rejected $conf:"
		cat "$PHP_PEER_DIR/lighttpd-check.log" >&2
		return 1
	fi
	lighttpd -D -f "$conf" </dev/null >>"$PHP_PEER_DIR/lighttpd-error.log" 2>&1 &
	pid=$!
	echo "$pid" >"$PEER_PID_DIR/lighttpd.pid"
	for ((tries = 0; tries < 100; tries++)); do
		status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
			"http://127.0.0.1:$PHP_PEER_HTTP_PORT/health" || true)
		[[ $status == 200 ]] && break
		if ! peer_pid_alive "$pid"; then
			peer_log "lighttpd exited at start; the end of $PHP_PEER_DIR/lighttpd-error.log:"
			tail -n 20 "$PHP_PEER_DIR/lighttpd-error.log" >&2
			return 1
		fi
		sleep 0.1
	done
	if [[ $status != 200 ]]; then
		peer_log "GET /health on 127.0.0.1:$PHP_PEER_HTTP_PORT did not return 200 within 10 s (last status $status); see $PHP_PEER_DIR/php-error.log"
		return 1
	fi
	peer_log "lighttpd ready on http://127.0.0.1:$PHP_PEER_HTTP_PORT (PID $pid)"
}

peer_start() {
	if [[ -z ${PHP_PEER_USEROPS_CONF:-} ]]; then
		peer_log "PHP_PEER_USEROPS_CONF must name the userops.conf to take the settings from"
		return 1
	fi
	peer_stop
	mkdir -p "$PEER_PID_DIR"
	peer_read_userops_conf "$PHP_PEER_USEROPS_CONF"
	peer_start_php_fpm
	if [[ $PHP_PEER_LIGHTTPD == yes ]]; then
		peer_start_lighttpd
	fi
}

case ${1:-} in
START)
	peer_set_paths
	peer_start
	;;
STOP)
	peer_set_paths
	peer_stop
	;;
*)
	echo "usage: $0 START|STOP (see the header of $0 for the variables)" >&2
	exit 2
	;;
esac
