#!/usr/bin/env bash
# Builds the Debian package cjsm-milter_<version>_<arch>.deb from this source tree.
#
#   scripts/package.sh [BINARY [OUTPUT_DIR]]
#
# BINARY: the cjsm-milter executable to package; without it, `cargo build --release --locked`
# builds one. OUTPUT_DIR: where the .deb goes (default: target/debian, or
# $CARGO_TARGET_DIR/debian). The last line printed is the .deb's path.
# PACKAGE_COMPRESSION: dpkg-deb's -Z (default xz; tests/package.rs uses none to save time).
#
# Plain dpkg-deb rather than cargo-deb or debhelper: it is in every Debian installation
# (dpkg is essential), so a fresh machine builds the package with nothing more than the
# binutils that Rust's linker already needs (strip). --root-owner-group makes every file
# root's without fakeroot. The maintainer scripts are in this file, below.
#
# Layout (Debian policy, FHS):
#   /usr/sbin/cjsm-milter                        a daemon run by the administrator (section 8)
#   /usr/lib/systemd/system/cjsm-milter.service  contrib/cjsm-milter.service, pointing at /usr/sbin
#   /etc/cjsm-milter/cjsm-milter.toml            cjsm-milter.example.toml, a conffile
#   /usr/share/cjsm-milter/{postfix,sendmail,dashboards,contrib}  the kits, as in the repository
#                                                (so their READMEs' relative links hold); not
#                                                under /usr/share/doc, which a minimal system
#                                                may leave out (dpkg path-exclude)
#   /usr/share/man/man8/cjsm-milter.8.gz, /usr/share/man/man5/cjsm-milter.toml.5.gz
#   /usr/share/doc/cjsm-milter/{copyright,changelog.gz,CHANGELOG.md.gz,README.md.gz}
# The package creates the system user and group cjsm-milter and /var/lib/cjsm-milter (0750,
# theirs) on install, and removes them on purge. It does not enable or start the service:
# the milter answers mail only once the MTA is set up for it (postfix/README.md), so the
# administrator enables it then (systemctl enable --now cjsm-milter).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

fail() {
    echo "package.sh: $*" >&2
    exit 1
}

for tool in dpkg-deb dpkg strip objdump readelf gzip md5sum; do
    command -v "$tool" >/dev/null 2>&1 \
        || fail "$tool not found (dpkg-deb and dpkg: dpkg; strip, objdump and readelf: binutils)"
done

# The project has no mailing list; dpkg and lintian want an address here.
maintainer="cjsm-milter developers <cjsm-milter@example.org>"
target_dir=${CARGO_TARGET_DIR:-$root/target}
binary=${1:-}
if [ -z "$binary" ]; then
    (cd "$root" && cargo build --release --locked)
    binary=$target_dir/release/cjsm-milter
fi
[ -x "$binary" ] || fail "$binary is not an executable"
out_dir=${2:-$target_dir/debian}
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)

# The version is the crate's: the first `version = "..."` of Cargo.toml, in [package].
version=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
[ -n "$version" ] || fail "no version = \"...\" line in $root/Cargo.toml"
arch=$(dpkg --print-architecture)
deb=$out_dir/cjsm-milter_${version}_${arch}.deb

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/cjsm-milter
mkdir -p "$pkg/DEBIAN"

# install SOURCE DEST MODE, creating DEST's directories (0755).
put() {
    install -D -m "$3" "$1" "$pkg/$2"
}

put "$binary" usr/sbin/cjsm-milter 0755
strip --strip-unneeded "$pkg/usr/sbin/cjsm-milter"

# The unit as contrib/ has it, with the package's paths. Each substitution must match, so a
# change to the contrib unit cannot leave a /usr/local path in the package unnoticed.
unit=$pkg/usr/lib/systemd/system/cjsm-milter.service
put "$root/contrib/cjsm-milter.service" usr/lib/systemd/system/cjsm-milter.service 0644
for substitution in \
    's|^ExecStart=/usr/local/bin/cjsm-milter |ExecStart=/usr/sbin/cjsm-milter |' \
    's|^Documentation=file:/usr/local/share/doc/cjsm-milter/postfix/README.md$|Documentation=man:cjsm-milter(8) man:cjsm-milter.toml(5) file:/usr/share/cjsm-milter/postfix/README.md|'; do
    before=$(md5sum <"$unit")
    sed -i "$substitution" "$unit"
    [ "$before" != "$(md5sum <"$unit")" ] || fail "contrib/cjsm-milter.service: no line for $substitution"
done
# The comment on how to install the unit by hand does not apply to the package's copy.
sed -i '/^# systemd unit for cjsm-milter. Install:$/,/^# See postfix\/README.md/c\
# systemd unit for cjsm-milter, from the Debian package. Enable it once the MTA is set up:\
#   systemctl enable --now cjsm-milter\
# See /usr/share/cjsm-milter/postfix/README.md (or sendmail/README.md) and cjsm-milter(8).' "$unit"
grep -q '^ExecStart=/usr/sbin/cjsm-milter ' "$unit" || fail "the unit's ExecStart is not /usr/sbin/cjsm-milter"

# The website's unit, with the package's paths likewise.
web_unit=$pkg/usr/lib/systemd/system/cjsm-milter-web.service
put "$root/contrib/cjsm-milter-web.service" usr/lib/systemd/system/cjsm-milter-web.service 0644
for substitution in \
    's|^ExecStart=/usr/local/bin/cjsm-milter |ExecStart=/usr/sbin/cjsm-milter |' \
    's|^Documentation=file:/usr/local/share/doc/cjsm-milter/README.md$|Documentation=man:cjsm-milter(8) man:cjsm-milter.toml(5) file:/usr/share/doc/cjsm-milter/README.md.gz|'; do
    before=$(md5sum <"$web_unit")
    sed -i "$substitution" "$web_unit"
    [ "$before" != "$(md5sum <"$web_unit")" ] || fail "contrib/cjsm-milter-web.service: no line for $substitution"
done
sed -i '/^# systemd unit for the Secure eMail website (cjsm-milter web). Install:$/,/^# It reads the same config/c\
# systemd unit for the Secure eMail website, from the Debian package. Enable it once a hub\
# operator exists (cjsm-milter web add-operator ADDRESS): systemctl enable --now cjsm-milter-web\
# See README.md ("Website") and cjsm-milter(8).' "$web_unit"
grep -q '^ExecStart=/usr/sbin/cjsm-milter ' "$web_unit" || fail "the web unit's ExecStart is not /usr/sbin/cjsm-milter"

put "$root/cjsm-milter.example.toml" etc/cjsm-milter/cjsm-milter.toml 0644
echo /etc/cjsm-milter/cjsm-milter.toml >"$pkg/DEBIAN/conffiles"

for kit in postfix sendmail dovecot dashboards; do
    while IFS= read -r -d '' file; do
        put "$file" "usr/share/cjsm-milter/${file#"$root"/}" 0644
    done < <(find "$root/$kit" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0)
done
put "$root/contrib/cjsm-milter.toml" usr/share/cjsm-milter/contrib/cjsm-milter.toml 0644

for page in man/cjsm-milter.8 man/cjsm-milter.toml.5; do
    section=${page##*.}
    mkdir -p "$pkg/usr/share/man/man$section"
    gzip -9n <"$root/$page" >"$pkg/usr/share/man/man$section/$(basename "$page").gz"
done

doc=$pkg/usr/share/doc/cjsm-milter
mkdir -p "$doc"
gzip -9n <"$root/CHANGELOG.md" >"$doc/CHANGELOG.md.gz"
# A native package's changelog.gz is in Debian's format: one entry pointing at the real one,
# dated by the last commit so that the same tree builds the same package.
when=$(git -C "$root" log -1 --format=%aD 2>/dev/null || date -R)
gzip -9n >"$doc/changelog.gz" <<EOF
cjsm-milter ($version) unstable; urgency=medium

  * See /usr/share/doc/cjsm-milter/CHANGELOG.md.gz for what changed.

 -- $maintainer  $when
EOF
gzip -9n <"$root/README.md" >"$doc/README.md.gz"
cat >"$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: cjsm-milter
Comment: The Rust crates linked into the binary keep their own licences (MIT, Apache-2.0 and
 compatible); OpenSSL (Apache-2.0) is linked statically.

Files: *
Copyright: 2026 the cjsm-milter developers
License: GPL-3.0-or-later
 This program is free software: you can redistribute it and/or modify it under the terms of
 the GNU General Public License as published by the Free Software Foundation, either version 3
 of the License, or (at your option) any later version.
 .
 On Debian systems, the complete text of the GNU General Public License version 3 can be found
 in /usr/share/common-licenses/GPL-3.
EOF
find "$pkg" -type d -exec chmod 0755 {} +

# Dependencies: the shared libraries the binary links, by the Debian package that ships them,
# and the oldest glibc that has every symbol version it uses. An unknown library fails the
# build rather than giving a package that installs and cannot run.
depends=()
glibc=$(objdump -T "$pkg/usr/sbin/cjsm-milter" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
while read -r library; do
    case "$library" in
    libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux*.so.*)
        dependency="libc6 (>= ${glibc:?no GLIBC symbol versions in the binary})"
        ;;
    libgcc_s.so.1) dependency="libgcc-s1" ;;
    *) fail "the binary links $library: add its Debian package to scripts/package.sh" ;;
    esac
    [[ " ${depends[*]} " == *" $dependency "* ]] || depends+=("$dependency")
done < <(readelf -d "$pkg/usr/sbin/cjsm-milter" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
# passwd: useradd, userdel and groupdel for the service user.
depends+=(passwd)
depends_line=$(printf '%s, ' "${depends[@]}")

cat >"$pkg/DEBIAN/control" <<EOF
Package: cjsm-milter
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Depends: ${depends_line%, }
Suggests: postfix | sendmail, redis-server, dovecot-core
Section: mail
Priority: optional
Description: protective-marking milter for a CJSM-style secure-email hub
 A mail filter (milter) for Postfix and Sendmail that reads the protective
 marking of every message (OFFICIAL, OFFICIAL-SENSITIVE, RESTRICTED, SECRET,
 the Australian and Microsoft label formats), decides whether each recipient
 may receive it over a secure route, and accepts, rejects or tempfails it.
 It keeps the Secure eMail Directory of organisations and users (in files or
 Redis), answers the MTA's routing lookups, and encrypts with S/MIME where
 a recipient has no secure route but a certificate.
EOF

cat >"$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# The service user and group, and the directory store's home, owned by them (personal data:
# 0750). Created when missing only, so an administrator's changes survive upgrades.
set -e
if [ "$1" = configure ]; then
    if ! getent group cjsm-milter >/dev/null; then
        groupadd --system cjsm-milter
    fi
    if ! getent passwd cjsm-milter >/dev/null; then
        useradd --system --gid cjsm-milter --home-dir /var/lib/cjsm-milter --no-create-home \
            --shell /usr/sbin/nologin --comment "cjsm-milter" cjsm-milter
    fi
    if [ ! -d /var/lib/cjsm-milter ]; then
        install -d -o cjsm-milter -g cjsm-milter -m 0750 /var/lib/cjsm-milter
    fi
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        # An upgrade restarts a running milter on the new binary; a first install starts nothing.
        if [ -n "$2" ]; then
            deb-systemd-invoke try-restart cjsm-milter.service >/dev/null || true
        fi
    fi
fi
exit 0
EOF

cat >"$pkg/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    deb-systemd-invoke stop cjsm-milter.service >/dev/null || true
fi
exit 0
EOF

cat >"$pkg/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# Purge removes what postinst created: the directory store (the embedded SQLite database:
# organisations, users, certificates, audit trail), the user and the group. dpkg removes the conffile.
set -e
case "$1" in
purge)
    rm -rf /var/lib/cjsm-milter
    if getent passwd cjsm-milter >/dev/null; then
        userdel cjsm-milter
    fi
    if getent group cjsm-milter >/dev/null; then
        groupdel cjsm-milter
    fi
    rmdir /etc/cjsm-milter 2>/dev/null || true
    ;;
esac
if [ "$1" = remove ] || [ "$1" = purge ]; then
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
    fi
fi
exit 0
EOF
chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm" "$pkg/DEBIAN/postrm"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles"

(cd "$pkg" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' \
    | LC_ALL=C sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/md5sums"

dpkg-deb --build --root-owner-group -Z"${PACKAGE_COMPRESSION:-xz}" "$pkg" "$deb" >/dev/null
echo "$deb"
