#!/bin/sh
# Shipped documentation against the program:
#  - man/novnc-audio.1 formats without warnings (groff -ww, man, as lintian does);
#  - its OPTIONS section documents exactly the long options of --help, and
#    every option of docs/CONTRACT.md;
#  - examples/novnc-audio.conf lists every settable key, and the daemon
#    accepts it both as shipped and with every key uncommented.
#
#   tests/packaging/manpage.sh        (NOVNC_AUDIO=path/to/binary to skip cargo build)
set -eu
cd "$(dirname "$0")/../.."
fail=0
bad() { printf 'FAIL: %s\n' "$*" >&2; fail=1; }
ok() { printf 'ok: %s\n' "$*"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for p in groff man-db; do
	dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$p" >/dev/null
done

if [ -z "${NOVNC_AUDIO:-}" ]; then
	[ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"
	cargo build --quiet --bin novnc-audio
	NOVNC_AUDIO=target/debug/novnc-audio
fi

# --- formatting --------------------------------------------------------------------
man=man/novnc-audio.1
if out=$(groff -man -ww -z "$man" 2>&1) && [ -z "$out" ]; then
	ok "groff -man -ww -z: no warnings"
else
	bad "groff warnings: $out"
fi
out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$man" 2>&1 >/dev/null) || true
[ -z "$out" ] && ok "man --warnings: clean" || bad "man warnings: $out"
MANWIDTH=80 man -l "$man" >/dev/null 2>&1 && ok "man -l renders" || bad "man -l failed"
for section in NAME SYNOPSIS DESCRIPTION OPTIONS "CONFIGURATION FILE" "WIRE FORMAT" \
	"HTTP ENDPOINTS" SIGNALS "EXIT STATUS" ENVIRONMENT FILES SECURITY EXAMPLES "SEE ALSO"; do
	grep -qx "\\.SH \"*$section\"*" "$man" || bad "section $section missing"
done
for var in PULSE_SERVER XDG_RUNTIME_DIR NOTIFY_SOCKET JOURNAL_STREAM; do
	sed -n '/^\.SH ENVIRONMENT/,/^\.SH /p' "$man" | grep -qx "\\.B $var" || bad "ENVIRONMENT lacks $var"
done

# --- options: --help, man page, contract -------------------------------------------------
"$NOVNC_AUDIO" --help | grep -o '^ *\(-[a-zA-Z], \)\?--[a-z][a-z-]*' |
	sed 's/.*--//' | sort -u >"$tmp/help"
sed -n '/^\.SH OPTIONS/,/^\.SH /p' "$man" | grep -A1 '^\.TP' |
	grep -o '\\-\\-[a-z][a-z\\-]*' | sed 's/\\-/-/g; s/^--//' | sort -u >"$tmp/man"
awk '/^## Command line/ { sec = 1 } sec && /^```/ { n++; next } sec && n == 1' docs/CONTRACT.md |
	grep -o '^ *\(-[a-zA-Z], \)\?--[a-z][a-z-]*' | sed 's/.*--//' | sort -u >"$tmp/contract"
[ -s "$tmp/help" ] || bad "no options parsed from --help"
[ -s "$tmp/contract" ] || bad "no options parsed from docs/CONTRACT.md"
if diff -u "$tmp/help" "$tmp/man" >"$tmp/d1"; then
	ok "man page documents the $(wc -l <"$tmp/help") long options of --help"
else
	bad "--help (-) and man page OPTIONS (+) differ:"; sed 1,2d "$tmp/d1" | grep '^[-+]' >&2
fi
missing=$(comm -23 "$tmp/contract" "$tmp/man")
[ -z "$missing" ] && ok "every contract option is in the man page" ||
	bad "contract options missing from the man page: $missing"

# --- example configuration --------------------------------------------------------------------
conf=examples/novnc-audio.conf
grep -v '^\(help\|version\|config\|check-config\)$' "$tmp/help" >"$tmp/keys"
sed -n 's/^#\([a-z][a-z-]*\) = .*/\1/p' "$conf" | sort -u >"$tmp/conf-keys"
if diff -u "$tmp/keys" "$tmp/conf-keys" >"$tmp/d2"; then
	ok "example config lists all $(wc -l <"$tmp/keys") keys"
else
	bad "settable keys (-) and example config keys (+) differ:"; sed 1,2d "$tmp/d2" | grep '^[-+]' >&2
fi
grep -v '^#' "$conf" | grep -q '[^[:space:]]' && bad "example config has active settings"
if out=$("$NOVNC_AUDIO" --config "$conf" --check-config 2>&1); then
	ok "daemon accepts the example config as shipped"
else
	bad "daemon rejects the example config: $out"
fi
echo secret >"$tmp/token"
sed -n 's/^#\([a-z][a-z-]* = .*\)/\1/p' "$conf" |
	sed "s|^token-file = .*|token-file = $tmp/token|; s|^pidfile = .*|pidfile = $tmp/pid|; s|^daemonize = .*|daemonize = true|" >"$tmp/all.conf"
if out=$("$NOVNC_AUDIO" --config "$tmp/all.conf" --check-config 2>&1); then
	ok "daemon accepts the example config with every key uncommented"
else
	bad "daemon rejects the uncommented example config: $out"
fi

[ "$fail" = 0 ] && echo "manpage.sh: all checks passed" || echo "manpage.sh: FAILED" >&2
exit "$fail"
