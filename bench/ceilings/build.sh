#!/bin/sh
# Builds the three ceiling programs, noop, confirm_sql and db_client, into
# OUTDIR with cc (or $CC) and pkg-config.
#
# Usage: bench/ceilings/build.sh OUTDIR
#
# CFLAGS defaults to -g -O2, the flags of userops' own autotools build, so
# the ceilings and userops are compiled alike. Needs libfcgi-dev and
# libmariadb-dev.
set -eu

if [ $# -ne 1 ] || [ "$1" = --help ]; then
	echo "Usage: $0 OUTDIR" >&2
	[ $# -eq 1 ] && exit 0
	exit 2
fi
out=$1
src=$(cd "$(dirname "$0")" && pwd)
cc=${CC:-cc}
cflags=${CFLAGS:--g -O2}
std="-std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra"

for module in fcgi libmariadb; do
	if ! pkg-config --exists "$module"; then
		echo "$0: pkg-config cannot find $module; install libfcgi-dev and libmariadb-dev" >&2
		exit 1
	fi
done
fcgi_cflags=$(pkg-config --cflags fcgi)
fcgi_libs=$(pkg-config --libs fcgi)
db_cflags=$(pkg-config --cflags libmariadb)
db_libs=$(pkg-config --libs libmariadb)

mkdir -p "$out"
# The variables hold several words each and are split on purpose.
# shellcheck disable=SC2086
{
	$cc $std $cflags $fcgi_cflags -o "$out/noop" \
		"$src/noop.c" "$src/responder.c" $fcgi_libs
	$cc $std $cflags $fcgi_cflags $db_cflags -o "$out/confirm_sql" \
		"$src/confirm_sql.c" "$src/responder.c" "$src/confirm_txn.c" $fcgi_libs $db_libs
	$cc $std $cflags $db_cflags -pthread -o "$out/db_client" \
		"$src/db_client.c" "$src/confirm_txn.c" $db_libs
}
echo "built $out/noop $out/confirm_sql $out/db_client"
