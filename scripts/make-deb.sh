#!/bin/sh
# Build the Debian package: target/debian/novnc-audio_<version>_<arch>.deb
#
#   ./scripts/make-deb.sh        (or: make deb)
#
# 1. installs the build dependencies with apt (only what is missing);
# 2. copies the working tree (files git tracks or would track) to a scratch
#    directory, so the repository is never littered;
# 3. vendors the crates there for Linux only (cargo vendor-filterer, installed
#    with cargo if missing) and removes bundled C sources we do not build
#    (audiopus_sys's copy of libopus: we link the system libopus) and prebuilt
#    objects for other platforms (ring), fixing the vendored checksums;
# 4. runs dpkg-buildpackage -us -uc -b there (offline build, see debian/rules);
# 5. copies the .deb, the -dbgsym .deb and the .changes to target/debian/ and
#    runs lintian on them.
#
# Needs a Rust toolchain from rustup on PATH (or in ~/.cargo/bin), as new as
# rust-version in Cargo.toml; Debian's cargo is too old and is not used.
# Environment: KEEP_BUILD_DIR=1 keeps the scratch directory.
set -eu

start=$(date +%s)
cd "$(dirname "$0")/.."
top=$(pwd)
say() { printf 'make-deb: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

build_deps="debhelper devscripts lintian dpkg-dev libpulse-dev libopus-dev libglib2.0-dev pkg-config"

# --- 1. build dependencies ----------------------------------------------------
missing=
for p in $build_deps; do
	dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	say "installing:$missing"
	[ "$(id -u)" = 0 ] && sudo= || sudo=sudo
	export DEBIAN_FRONTEND=noninteractive
	# shellcheck disable=SC2086
	if ! $sudo apt-get install -y --no-install-recommends $missing; then
		say "apt-get install failed; refreshing the package lists"
		$sudo apt-get update
		# shellcheck disable=SC2086
		$sudo apt-get install -y --no-install-recommends $missing
	fi
fi

# --- Rust toolchain -------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
	PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust with rustup"
# Put the real toolchain first so that nothing falls back to /usr/bin/rustc.
if command -v rustup >/dev/null 2>&1; then
	PATH="$(dirname "$(rustup which cargo)"):$PATH"
fi
export PATH
need=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
have=$(rustc --version | cut -d' ' -f2)
if [ -n "$need" ] && ! dpkg --compare-versions "$have" ge "$need"; then
	die "rustc $have is older than rust-version $need (Cargo.toml)"
fi

version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
arch=$(dpkg --print-architecture)
[ -n "$version" ] || die "no version in Cargo.toml"

# --- 2. scratch copy ---------------------------------------------------------------
scratch=$(mktemp -d "${TMPDIR:-/tmp}/novnc-audio-deb.XXXXXX")
cleanup() {
	if [ "${KEEP_BUILD_DIR:-0}" = 1 ]; then
		say "build directory kept: $scratch"
	else
		rm -rf "$scratch"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
src="$scratch/novnc-audio-$version"
mkdir -p "$src"
if git rev-parse --git-dir >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard |
		xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
		tar --null -T - -cf - | tar -xf - -C "$src"
else
	tar --exclude=./target --exclude=./vendor --exclude=./.git -cf - . | tar -xf - -C "$src"
fi

# The package version follows Cargo.toml.
deb_version=$(dpkg-parsechangelog -l "$src/debian/changelog" -SVersion)
if [ "$deb_version" != "$version" ]; then
	say "warning: debian/changelog says $deb_version, Cargo.toml $version; adding an entry to the copy (update debian/changelog with dch -v $version)"
	(cd "$src" && DEBFULLNAME=$(dpkg-parsechangelog -SMaintainer | sed 's/ *<.*//') \
		DEBEMAIL=$(dpkg-parsechangelog -SMaintainer | sed 's/.*<\(.*\)>/\1/') \
		dch --newversion "$version" --distribution unstable --force-distribution \
		"New version $version." >/dev/null)
fi

# --- 3. vendor ------------------------------------------------------------------------
cd "$src"
if ! cargo vendor-filterer --help >/dev/null 2>&1; then
	say "installing cargo-vendor-filterer (once)"
	cargo install --locked --quiet cargo-vendor-filterer ||
		say "warning: cargo-vendor-filterer could not be installed; vendoring every platform"
fi
if cargo vendor-filterer --help >/dev/null 2>&1; then
	# Every Linux target Debian builds for; other platforms' crates become stubs.
	cargo vendor-filterer \
		--platform='*-unknown-linux-gnu' --platform='*-unknown-linux-gnueabihf' \
		--platform='*-unknown-linux-gnueabi' --platform='*-unknown-linux-gnuabi64' \
		vendor >"$scratch/vendor.log" 2>&1 || { cat "$scratch/vendor.log" >&2; die "cargo vendor-filterer failed"; }
else
	cargo vendor --locked vendor >"$scratch/vendor.log" 2>&1 || { cat "$scratch/vendor.log" >&2; die "cargo vendor failed"; }
fi

# Remove bundled sources and prebuilt objects that are never used on Linux,
# and drop them from the vendored checksums.
strip_vendored() { # crate glob... (globs relative to the crate, as find -path)
	crate=$1
	shift
	[ -d "vendor/$crate" ] || return 0
	list="$scratch/strip-$crate"
	: >"$list"
	for glob; do
		(cd "vendor/$crate" && find . -path "./$glob" -prune -print | sed 's|^\./||') >>"$list"
	done
	[ -s "$list" ] || { say "warning: nothing to strip in $crate ($*)"; return 0; }
	(cd "vendor/$crate" && tr '\n' '\0' <"$list" | xargs -0 rm -rf)
	perl -MJSON::PP -e '
		my ($file, $listfile) = @ARGV;
		open my $l, "<", $listfile or die "$listfile: $!";
		chomp(my @gone = <$l>);
		open my $in, "<", $file or die "$file: $!";
		my $sums = decode_json(do { local $/; <$in> });
		close $in;
		for my $name (keys %{$sums->{files}}) {
			delete $sums->{files}{$name}
				if grep { $name eq $_ || index($name, "$_/") == 0 } @gone;
		}
		open my $out, ">", $file or die "$file: $!";
		print $out JSON::PP->new->canonical->encode($sums);
		close $out;
	' "vendor/$crate/.cargo-checksum.json" "$list"
	say "stripped from $crate: $(wc -l <"$list") paths ($*)"
}
strip_vendored audiopus_sys 'opus'            # libopus sources: the system libopus is linked
strip_vendored system-deps 'src/tests'        # prebuilt test archives (*.a)
# ring: assembly and objects for Windows and Apple (Linux uses *-elf.S, *-linux*.S)
strip_vendored ring 'pregenerated/*-nasm.o' 'pregenerated/*-nasm.asm' \
	'pregenerated/*-win32n.o' 'pregenerated/*-win32n.asm' 'pregenerated/*-win64.S' \
	'pregenerated/*-macosx.S' 'pregenerated/*-ios64.S'
say "vendored $(ls vendor | wc -l) crates, $(du -sh vendor | cut -f1)"

# --- 4. build ----------------------------------------------------------------------------
say "building $version for $arch in $src"
dpkg-buildpackage -us -uc -b

# --- 5. results -------------------------------------------------------------------------
out="$top/target/debian"
mkdir -p "$out"
changes="$scratch/novnc-audio_${version}_${arch}.changes"
for f in "$scratch"/*.deb "$scratch"/*.buildinfo "$changes"; do
	cp "$f" "$out/"
done
deb="$out/novnc-audio_${version}_${arch}.deb"
[ -f "$deb" ] || die "$deb was not produced"
say "built $deb ($(du -h "$deb" | cut -f1))"

say "lintian:"
lintian_rc=0
lintian --info --fail-on error,warning "$out/novnc-audio_${version}_${arch}.changes" || lintian_rc=$?
say "done in $(($(date +%s) - start)) s"
exit "$lintian_rc"
