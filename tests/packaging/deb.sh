#!/bin/sh
# Build the .deb (make deb), check it with lintian, install it with apt and
# check what it installed.  Runs as root on Debian 12; leaves the package
# installed (PURGE=1 removes it at the end).
#
#   tests/packaging/deb.sh            SKIP_BUILD=1 reuses target/debian/*.deb
set -eu
cd "$(dirname "$0")/../.."
fail=0
bad() { printf 'FAIL: %s\n' "$*" >&2; fail=1; }
ok() { printf 'ok: %s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ "$(id -u)" = 0 ] || { echo "deb.sh: run as root" >&2; exit 1; }

version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
arch=$(dpkg --print-architecture)
deb=target/debian/novnc-audio_${version}_${arch}.deb

step "make deb"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
	t0=$(date +%s)
	make deb || bad "make deb failed (build or lintian)"
	ok "make deb took $(($(date +%s) - t0)) s"
fi
[ -f "$deb" ] || { bad "$deb missing"; exit 1; }
ok "$deb: $(du -k "$deb" | cut -f1) KiB"

step "lintian"
lintian --info target/debian/novnc-audio_${version}_${arch}.changes >"$tmp/lintian" 2>&1 || true
cat "$tmp/lintian"
if grep -E '^[EW]: ' "$tmp/lintian" | grep -v 'initial-upload-closes-no-bugs' >&2; then
	bad "lintian reports errors or warnings"
else
	ok "lintian: no errors, no warnings"
fi

step "install"
pulse_before=$(find /etc/pulse -type f -exec md5sum {} + 2>/dev/null | sort)
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "./$deb" >"$tmp/apt" 2>&1 ||
	{ cat "$tmp/apt"; bad "apt-get install failed"; exit 1; }
ok "apt-get install ./$deb"
pulse_after=$(find /etc/pulse -type f -exec md5sum {} + 2>/dev/null | sort)
[ "$pulse_before" = "$pulse_after" ] && ok "/etc/pulse untouched" || bad "installing changed /etc/pulse"

step "installed files"
out=$(/usr/bin/novnc-audio --version) && echo "$out" | grep -q "$version" &&
	ok "novnc-audio --version: $out" || bad "novnc-audio --version: $out"
page=$(man -w novnc-audio 2>&1) && [ "$page" = /usr/share/man/man1/novnc-audio.1.gz ] &&
	ok "man -w novnc-audio: $page" || bad "man -w novnc-audio: $page"
for f in /etc/novnc-audio.conf \
	/lib/systemd/system/novnc-audio.service \
	/usr/lib/systemd/user/novnc-audio.service \
	/usr/lib/sysusers.d/novnc-audio.conf \
	/usr/share/novnc-audio/pulse/system.pa.d/novnc-audio.pa \
	/usr/share/novnc-audio/pulse/default.pa.d/novnc-audio.pa \
	/usr/share/doc/novnc-audio/copyright \
	/usr/share/doc/novnc-audio/README.Debian \
	/usr/share/doc/novnc-audio/examples/novnc-audio.conf \
	/usr/share/doc/novnc-audio/examples/nginx/novnc-audio.conf \
	/usr/share/doc/novnc-audio/examples/pulse/system.pa.d/novnc-audio.pa \
	/usr/share/doc/novnc-audio/examples/pulseaudio-system.service; do
	[ -f "$f" ] && ok "$f" || bad "$f missing"
done
for f in README.md web/index.html web/novnc-audio.js; do
	[ -f "$f" ] || continue # shipped only when the tree has them
	case $f in
	README.md) inst=/usr/share/doc/novnc-audio/README.md ;;
	*) inst=/usr/share/novnc-audio/$f ;;
	esac
	# dh_compress gzips documentation over 4 KiB
	[ -f "$inst" ] || { [ -f "$inst.gz" ] && inst=$inst.gz; }
	case $inst in
	*.gz) zcat "$inst" >"$tmp/unpacked" 2>/dev/null || : >"$tmp/unpacked" ;;
	*) cp "$inst" "$tmp/unpacked" 2>/dev/null || : >"$tmp/unpacked" ;;
	esac
	cmp -s "$f" "$tmp/unpacked" && ok "$inst" || bad "$inst missing or different from $f"
done
dpkg-query -W -f='${Conffiles}\n' novnc-audio | grep -q '^ /etc/novnc-audio.conf ' &&
	ok "/etc/novnc-audio.conf is a conffile" || bad "/etc/novnc-audio.conf is not a conffile"
/usr/bin/novnc-audio --config /etc/novnc-audio.conf --check-config >/dev/null 2>&1 &&
	ok "the installed config is valid" || bad "novnc-audio --check-config rejects /etc/novnc-audio.conf"
if id novnc-audio >/dev/null 2>&1; then
	ok "user: $(id novnc-audio)"
	id -nG novnc-audio | tr ' ' '\n' | grep -qx pulse-access &&
		ok "novnc-audio is in pulse-access" || bad "novnc-audio is not in pulse-access"
	[ "$(getent passwd novnc-audio | cut -d: -f7)" = /usr/sbin/nologin ] ||
		bad "novnc-audio has a login shell"
else
	bad "user novnc-audio was not created"
fi
[ -e /etc/systemd/system/multi-user.target.wants/novnc-audio.service ] &&
	bad "the system unit was enabled on install" || ok "system unit not enabled on install"

step "systemd-analyze"
if out=$(systemd-analyze verify /lib/systemd/system/novnc-audio.service 2>&1) && [ -z "$out" ]; then
	ok "systemd-analyze verify (system unit): clean"
else
	bad "systemd-analyze verify (system unit): $out"
fi
xdg=$(mktemp -d)
if out=$(XDG_RUNTIME_DIR=$xdg systemd-analyze --user verify /usr/lib/systemd/user/novnc-audio.service 2>&1) &&
	[ -z "$out" ]; then
	ok "systemd-analyze --user verify (user unit): clean"
else
	bad "systemd-analyze --user verify (user unit): $out"
fi
exposure=$(systemd-analyze security --offline=true /lib/systemd/system/novnc-audio.service 2>/dev/null |
	sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
user_exposure=$(XDG_RUNTIME_DIR=$xdg systemd-analyze security --user --offline=true \
	/usr/lib/systemd/user/novnc-audio.service 2>/dev/null |
	sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
rm -rf "$xdg"
if [ -n "$exposure" ] && awk "BEGIN { exit !($exposure < 2.0) }"; then
	ok "systemd-analyze security: system unit exposure $exposure (< 2.0)"
else
	bad "systemd-analyze security: system unit exposure '${exposure}', want < 2.0"
fi
echo "info: user unit exposure $user_exposure (user managers cannot apply namespace settings)"

if [ "${PURGE:-0}" = 1 ]; then
	step "purge"
	DEBIAN_FRONTEND=noninteractive apt-get purge -y novnc-audio >/dev/null 2>&1 &&
		ok "apt-get purge" || bad "apt-get purge failed"
	[ -e /etc/novnc-audio.conf ] && bad "/etc/novnc-audio.conf left after purge"
fi

echo
[ "$fail" = 0 ] && echo "deb.sh: all checks passed" || echo "deb.sh: FAILED" >&2
exit "$fail"
