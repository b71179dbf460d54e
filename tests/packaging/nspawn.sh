#!/bin/sh
# The system unit for real: boot Debian 12 with systemd in systemd-nspawn,
# install the .deb, start a system-wide PulseAudio with the shipped snippet
# and example unit, then check novnc-audio.service: active, frames reach a
# client on the host, reload, kill -9 restarts it, stop ends "inactive".
#
#   tests/packaging/nspawn.sh         (root; builds the .deb if missing)
#
# The root file system is debootstrapped once into /var/cache/novnc-audio-nspawn
# (NSPAWN_CACHE=...) and booted with --volatile=overlay, so every run starts
# from the pristine tree.  The container shares the host's network, so the
# client runs on the host.  PID 1 here need not be systemd: the container is
# neither registered nor given a scope (--register=no --keep-unit), and
# commands run in it with nsenter.  Everything started is stopped by pid.
set -eu
cd "$(dirname "$0")/../.."
fail=0
bad() { printf 'FAIL: %s\n' "$*" >&2; fail=1; }
ok() { printf 'ok: %s\n' "$*"; }
say() { printf 'nspawn.sh: %s\n' "$*"; }
start=$(date +%s)
[ "$(id -u)" = 0 ] || { echo "nspawn.sh: run as root" >&2; exit 1; }

cache=${NSPAWN_CACHE:-/var/cache/novnc-audio-nspawn}
rootfs=$cache/rootfs
version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
arch=$(dpkg --print-architecture)
deb=target/debian/novnc-audio_${version}_${arch}.deb

need=
for p in debootstrap systemd-container python3; do
	dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || need="$need $p"
done
if [ -n "$need" ]; then
	say "installing$need"
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need >/dev/null ||
		{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need >/dev/null; }
fi
[ -f "$deb" ] || make deb
[ -f "$deb" ] || { bad "$deb missing"; exit 1; }

# --- root file system (cached) ---------------------------------------------------------------
# The first Debian bookworm mirror of this machine's apt sources, and nothing else:
# the machine knows which mirror it may reach (a closed network, a proxy, a local
# copy). deb822 stanzas of sources.list.d/*.sources first (Types with deb, Suites
# with bookworm, not Enabled: no), then one-line entries of sources.list and
# sources.list.d/*.list ("deb [options] URI bookworm ..."). Comments are skipped.
apt_mirror() {
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk '
		function flush() {
			if (uri != "" && types ~ / deb( |$)/ && suites ~ / bookworm( |$)/ && enabled != "no") {
				print uri
				found = 1
				exit
			}
			uri = ""; types = ""; suites = ""; enabled = ""
		}
		/^[ \t]*#/ { next }
		/^[ \t]*$/ { flush(); next }
		{ key = tolower($1) }
		key == "types:" { $1 = ""; types = $0 }
		key == "suites:" { $1 = ""; suites = $0 }
		key == "enabled:" { enabled = tolower($2) }
		key == "uris:" { for (i = 2; i <= NF; i++) if ($i ~ /^([a-z]+:\/\/|file:\/)/) { uri = $i; break } }
		END { if (!found) flush() }
		' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '
		$1 == "deb" {
			i = 2
			if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
			if ($i ~ /^([a-z]+:\/\/|file:\/)/ && $(i + 1) == "bookworm") { print $i; exit }
		}' "$f"
	done
}
if [ ! -f "$rootfs/.novnc-audio-complete" ]; then
	mirror=$(apt_mirror | head -n 1)
	if [ -z "$mirror" ]; then
		bad "no Debian bookworm mirror in this machine's apt sources (/etc/apt/sources.list," \
			"/etc/apt/sources.list.d/*.list or *.sources): add the bookworm mirror this machine" \
			"uses, then run again"
		exit 1
	fi
	say "debootstrapping bookworm from $mirror into $rootfs (once)"
	mkdir -p "$cache"
	rm -rf "$rootfs.new"
	debootstrap --variant=minbase \
		--include=systemd,dbus,pulseaudio,pulseaudio-utils,libopus0,libglib2.0-0,libpulse-mainloop-glib0,libpam-systemd,procps \
		bookworm "$rootfs.new" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
		{ tail -20 "$cache/debootstrap.log"; bad "debootstrap failed"; exit 1; }
	rm -rf "$rootfs"
	mv "$rootfs.new" "$rootfs"
	touch "$rootfs/.novnc-audio-complete"
fi
# The package's dependencies go into the cached tree too (first alternatives),
# and libpam-systemd, which a user manager (user@.service) needs.
missing=
for p in libpam-systemd $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g'); do
	dpkg-query --admindir="$rootfs/var/lib/dpkg" -W -f='${db:Status-Status}' "$p" 2>/dev/null |
		grep -qx installed || missing="$missing $p"
done
if [ -n "$missing" ]; then
	say "adding to the cached tree:$missing"
	mkdir -p /run/systemd/nspawn
	if [ "$(findmnt -n -o FSTYPE /run/systemd/nspawn 2>/dev/null)" != tmpfs ]; then
		mount -t tmpfs -o mode=0755 tmpfs /run/systemd/nspawn && umount_after_deps=1
	fi
	systemd-nspawn --quiet --register=no --keep-unit -D "$rootfs" sh -c \
		"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$missing" \
		>"$cache/deps.log" 2>&1 || { tail -20 "$cache/deps.log"; bad "installing$missing in the tree failed"; }
	[ -n "${umount_after_deps:-}" ] && umount /run/systemd/nspawn
	[ "$fail" = 0 ] || exit 1
fi
ok "root file system $rootfs"

# --- boot -------------------------------------------------------------------------------------
tmp=$(mktemp -d)
nspawn_pid=
mounted_nspawn_tmpfs=
cleanup() {
	if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
		kill -TERM "$nspawn_pid" 2>/dev/null || true # nspawn powers the container off
		i=0
		while kill -0 "$nspawn_pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$nspawn_pid" 2>/dev/null || true
	fi
	if [ "$fail" != 0 ] && [ -n "${leader:-}" ] && [ -d "/proc/$leader" ]; then
		echo "--- journal of novnc-audio.service"
		in_ct journalctl -u novnc-audio --no-pager -n 30 2>/dev/null || true
	fi
	[ "$fail" != 0 ] && [ -s "$tmp/nspawn.log" ] && { echo "--- nspawn log"; tail -30 "$tmp/nspawn.log"; }
	[ -n "$mounted_nspawn_tmpfs" ] && umount /run/systemd/nspawn 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# nspawn keeps state under /run/systemd/nspawn and wants it on a tmpfs; /run
# is not one here.
mkdir -p /run/systemd/nspawn
if [ "$(findmnt -n -o FSTYPE /run/systemd/nspawn 2>/dev/null)" != tmpfs ]; then
	mount -t tmpfs -o mode=0755 tmpfs /run/systemd/nspawn
	mounted_nspawn_tmpfs=1
fi

# The port: 6090 unless something on the host uses it (the network is shared).
port=$(python3 -c '
import socket
for p in [6090] + [0]:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(s.getsockname()[1]); break
    except OSError:
        pass')
mkdir "$tmp/share"
cp "$deb" "$tmp/share/novnc-audio.deb"
chmod -R a+rX "$tmp"

systemd-nspawn --quiet --register=no --keep-unit --volatile=overlay \
	-D "$rootfs" -M novnc-audio-test --console=passive \
	--bind-ro="$tmp/share:/mnt/novnc-audio" -b >"$tmp/nspawn.log" 2>&1 &
nspawn_pid=$!

# The container's PID 1 is a child of systemd-nspawn running systemd.
leader=
i=0
while [ -z "$leader" ] && [ $i -lt 300 ]; do
	kill -0 "$nspawn_pid" 2>/dev/null || break
	for c in $(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null); do
		[ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] && leader=$c
	done
	[ -n "$leader" ] || sleep 0.1
	i=$((i + 1))
done
[ -n "$leader" ] || { bad "container did not boot"; exit 1; }
in_ct() { nsenter -t "$leader" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
# Wait for the manager's socket, then for the boot to finish.
i=0
until in_ct test -S /run/systemd/private 2>/dev/null || [ $i -ge 300 ]; do sleep 0.1; i=$((i + 1)); done
state=$(in_ct timeout 90 systemctl is-system-running --wait 2>/dev/null) || true
case $state in
running | degraded) ok "container booted (leader pid $leader, state $state)" ;;
*) bad "container state: '$state'"; in_ct systemctl --failed --no-pager || true; exit 1 ;;
esac
[ "$state" = degraded ] && in_ct systemctl --failed --no-legend --no-pager | sed 's/^/info: failed unit in container: /'

# --- install and configure --------------------------------------------------------------------
if in_ct dpkg -i /mnt/novnc-audio/novnc-audio.deb >"$tmp/dpkg.log" 2>&1; then
	ok "dpkg -i novnc-audio.deb"
else
	cat "$tmp/dpkg.log"; bad "dpkg -i failed"; exit 1
fi
[ "$(in_ct systemctl is-enabled novnc-audio 2>/dev/null)" = disabled ] &&
	ok "novnc-audio.service installed, disabled" || bad "novnc-audio.service is not 'disabled' after install"
in_ct systemctl is-active --quiet novnc-audio && bad "novnc-audio.service started on install"
in_ct sh -c "
	cp /usr/share/novnc-audio/pulse/system.pa.d/novnc-audio.pa /etc/pulse/system.pa.d/ &&
	cp /usr/share/doc/novnc-audio/examples/pulseaudio-system.service /etc/systemd/system/ &&
	printf 'host = 127.0.0.1\nport = %s\n' $port >>/etc/novnc-audio.conf &&
	systemctl daemon-reload"
if in_ct systemctl start pulseaudio-system; then
	ok "system-wide PulseAudio started (example unit + snippet)"
else
	bad "pulseaudio-system.service failed"
	in_ct journalctl -u pulseaudio-system --no-pager -n 30
	exit 1
fi
sinks=$(in_ct runuser -u novnc-audio -- env PULSE_SERVER=unix:/run/pulse/native pactl list short sinks 2>&1) || true
echo "$sinks" | grep -q novnc_audio && ok "the snippet created the novnc_audio sink" ||
	bad "no novnc_audio sink in the system-wide server: $sinks"
# Something to hear: noise into the default sink, as a member of pulse-access.
in_ct systemd-run --quiet --unit=novnc-noise -p User=novnc-audio -E PULSE_SERVER=unix:/run/pulse/native \
	pacat --raw --format=s16le --rate=48000 --channels=2 --volume=4000 /dev/urandom ||
	say "warning: could not start the noise source"

# --- the unit ---------------------------------------------------------------------------------
wait_active() { # seconds
	n=$(($1 * 10))
	while [ "$(in_ct systemctl is-active novnc-audio 2>/dev/null)" != active ]; do
		n=$((n - 1))
		[ $n -gt 0 ] || return 1
		sleep 0.1
	done
}
frames() { # label
	if out=$(tests/packaging/ws-frames.sh "ws://127.0.0.1:$port/audio" 25 1); then
		ok "$1: $out"
	else
		bad "$1: $out"
	fi
}
if in_ct systemctl start novnc-audio && wait_active 10; then
	ok "systemctl start novnc-audio: active (Type=notify, READY=1 received)"
else
	bad "novnc-audio.service did not become active: $(in_ct systemctl is-active novnc-audio)"
	exit 1
fi
in_ct ps -o user=,group=,supgrp=,args= -C novnc-audio | sed 's/^/info: /'
in_ct journalctl -u novnc-audio --no-pager -o cat | grep -q 'listening on' &&
	ok "journal: $(in_ct journalctl -u novnc-audio --no-pager -o cat | grep 'listening on' | tail -1)" ||
	bad "no 'listening on' line in the journal"
line=$(in_ct journalctl -u novnc-audio --no-pager -o cat | grep 'recording from' | tail -1)
[ -n "$line" ] && ok "journal: $line" || bad "no 'recording from' line in the journal"
frames "frames from the system unit"
score=$(in_ct systemd-analyze security novnc-audio --no-pager 2>/dev/null |
	sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
say "systemd-analyze security (running unit): ${score:-?}"

pid1=$(in_ct systemctl show -p MainPID --value novnc-audio)
in_ct systemctl reload novnc-audio && sleep 1
pid2=$(in_ct systemctl show -p MainPID --value novnc-audio)
if [ "$pid1" = "$pid2" ] && [ "$(in_ct systemctl is-active novnc-audio)" = active ]; then
	ok "systemctl reload (SIGHUP): still active, same pid $pid2"
else
	bad "reload: pid $pid1 -> $pid2, state $(in_ct systemctl is-active novnc-audio)"
fi

in_ct kill -9 "$pid2"
sleep 1
n=0
while [ $n -lt 100 ]; do
	pid3=$(in_ct systemctl show -p MainPID --value novnc-audio)
	[ "$pid3" != 0 ] && [ "$pid3" != "$pid2" ] && [ "$(in_ct systemctl is-active novnc-audio)" = active ] && break
	sleep 0.1
	n=$((n + 1))
done
restarts=$(in_ct systemctl show -p NRestarts --value novnc-audio)
if [ "$pid3" != "$pid2" ] && [ "$(in_ct systemctl is-active novnc-audio)" = active ]; then
	ok "kill -9 $pid2: restarted by systemd as pid $pid3 (NRestarts=$restarts)"
else
	bad "kill -9: not restarted (MainPID $pid3, $(in_ct systemctl is-active novnc-audio))"
fi
frames "frames after the restart"

in_ct systemctl stop novnc-audio || bad "systemctl stop failed"
active=$(in_ct systemctl show -p ActiveState --value novnc-audio)
result=$(in_ct systemctl show -p Result --value novnc-audio)
status=$(in_ct systemctl show -p ExecMainStatus --value novnc-audio)
if [ "$active" = inactive ] && [ "$result" = success ] && [ "$status" = 0 ]; then
	ok "systemctl stop: inactive, Result=success, exit status 0"
else
	bad "systemctl stop: ActiveState=$active Result=$result ExecMainStatus=$status"
fi

# --- the user unit, in a user manager with the user's own PulseAudio ----------------------------
in_ct useradd --create-home --user-group tester
uid=$(in_ct id -u tester)
in_ct systemctl start "user@$uid.service" || { bad "user@$uid.service did not start"; in_ct journalctl -u "user@$uid.service" --no-pager -n 15 -o cat; }
as_user() { in_ct runuser -u tester -- env XDG_RUNTIME_DIR="/run/user/$uid" "$@"; }
if as_user systemctl --user start novnc-audio; then
	n=0
	until [ "$(as_user systemctl --user is-active novnc-audio 2>/dev/null)" = active ] || [ $n -ge 100 ]; do
		sleep 0.1
		n=$((n + 1))
	done
fi
if [ "$(as_user systemctl --user is-active novnc-audio 2>/dev/null)" = active ]; then
	ok "user unit: systemctl --user start novnc-audio: active"
	# Something to hear in the user's PulseAudio (nothing is sent while nothing plays), once
	# the daemon's null sink is there.
	n=0
	until as_user pactl list short sinks 2>/dev/null | grep -q novnc_audio || [ $n -ge 50 ]; do
		sleep 0.1
		n=$((n + 1))
	done
	as_user systemd-run --user --quiet --unit=novnc-noise \
		pacat --raw --format=s16le --rate=48000 --channels=2 --volume=4000 /dev/urandom ||
		say "warning: could not start the user's noise source"
	frames "frames from the user unit (the user's PulseAudio)"
	as_user systemctl --user stop novnc-noise 2>/dev/null || true
	as_user systemctl --user stop novnc-audio
	r=$(as_user systemctl --user show -p Result --value novnc-audio)
	[ "$r" = success ] && ok "user unit: stopped cleanly" || bad "user unit stop: Result=$r"
else
	bad "user unit did not become active"
	as_user journalctl --user -u novnc-audio --no-pager -n 20 2>/dev/null ||
		in_ct journalctl --no-pager -n 30
fi

say "took $(($(date +%s) - start)) s"
[ "$fail" = 0 ] && echo "nspawn.sh: all checks passed" || echo "nspawn.sh: FAILED" >&2
exit "$fail"
