#!/usr/bin/env bash
# The whole test suite: the README's test command, and what .ci/run calls.
# Installs the Debian packages the tests need when they are missing, then runs the format
# and lint checks, every test, and builds the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."

# gcc and libc6-dev: the linker Rust uses; redis-server: the Redis backend's tests start
# their own (on a free loopback port, stopped by PID); python3-ldap and ldap-utils: real LDIF
# readers that parse the directory's LDIF export back; prometheus: promtool for the rules'
# tests, and a real Prometheus that evaluates every dashboard query; postfix and swaks: the
# milter behind a private Postfix instance the tests start on loopback.
# liblockfile1, libwrap0 and m4: Sendmail, unpacked beside Postfix (its package conflicts with
# postfix), run by the tests from target/sendmail.
# make and perl: OpenSSL, built from source for the S/MIME encryption (the openssl crate's
# "vendored" feature). openssl: the CLI the tests make certificates with and decrypt with.
PACKAGES=(gcc libc6-dev make perl redis-server python3-ldap ldap-utils prometheus postfix swaks
          liblockfile1 libwrap0 m4 openssl)

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "test.sh: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # Postfix without a system configuration: the tests run private instances only.
    echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
    echo "postfix postfix/mailname string test.local" | $sudo debconf-set-selections
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Sendmail from its .debs, unpacked (not installed): ../shared/RECIPES.md §1.
if [ ! -x target/sendmail/root/usr/libexec/sendmail/sendmail ]; then
    rm -rf target/sendmail && mkdir -p target/sendmail/debs
    (cd target/sendmail/debs && apt-get download sendmail-bin sendmail-cf sendmail-base 2>/dev/null)
    for deb in target/sendmail/debs/*.deb; do dpkg -x "$deb" target/sendmail/root; done
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo not found: install Rust 1.95 or later (https://rustup.rs)" >&2
    exit 1
fi

cargo fmt --all -- --check
promtool check rules dashboards/cjsm-rules.yml
promtool test rules dashboards/cjsm-rules.test.yml
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
cargo bench --locked --no-run
echo "test.sh: all checks passed"
