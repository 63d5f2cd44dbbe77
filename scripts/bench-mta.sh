#!/usr/bin/env bash
# MTA benchmark: smtp-source -> MTA -> smtp-sink on loopback, 2000 x 10 KB in 10 parallel
# sessions, throughput counted at the sink (messages delivered per second), for
#   MTA:    Postfix (private instance) and Sendmail (unpacked from Debian's .debs)
#   milter: none; cjsm-milter, the no-op indymilter (examples/noop_milter.rs) and OpenDKIM
#           (verify mode, TestPublicKeys, no DNS), each over inet and over a unix socket.
# Each row runs --runs times (default 3), rows interleaved (run 1 of every row, then run 2, …);
# the table gives the median, min-max and the ratio to the same MTA without a milter.
#
#   scripts/bench-mta.sh                          # everything (about 10 minutes on 2 cores)
#   scripts/bench-mta.sh --only postfix-cjsm-inet --only postfix-none --runs 5
#
# Row names: {postfix,sendmail}-{none,cjsm-inet,cjsm-unix,noop-inet,noop-unix,odkim-inet,odkim-unix}.
# --also noopnr-unix (or -inet) adds a row with the no-op milter started with --noreply (it asks
# the MTA not to wait for replies to CONNECT, headers, end of headers and body chunks).
# Mail: smtp-source's own 10240-byte body, unmarked, from alice@test.local to
# bob@met.pnn.police.uk: a secure-network recipient, so cjsm-milter accepts it (unmarked mail
# counts as OFFICIAL-SENSITIVE, allowed to secure recipients) and adds its marking header.
# smtp-source does not do STARTTLS, so cjsm-milter's config puts 127.0.0.0/8 on
# [routing] secure_networks (the client plays a server on the secure network); without it the
# mail would be refused at end of DATA.
# Loopback only; every process started here is stopped by its PID. Needs root (Postfix,
# smtp-sink -u, unshare --uts for Sendmail). Installs postfix, opendkim, opendkim-tools,
# liblockfile1, libwrap0 and m4 when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

RUNS=3
MESSAGES=2000
SESSIONS=10
SIZE=10240
ONLY=()
ALSO=()
KEEP=0
while (($#)); do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --messages) MESSAGES=$2; shift 2 ;;
        --sessions) SESSIONS=$2; shift 2 ;;
        --only) ONLY+=("$2"); shift 2 ;;
        --keep) KEEP=1; shift ;;
        --also) ALSO+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "bench-mta.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
RCPT=bob@met.pnn.police.uk
FROM=alice@test.local

# --- packages, binaries -----------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || { echo "bench-mta.sh: run as root (private Postfix, smtp-sink -u, unshare)" >&2; exit 1; }
PACKAGES=(postfix opendkim opendkim-tools liblockfile1 libwrap0 m4)
missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "bench-mta.sh: installing ${missing[*]}" >&2
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    echo "postfix postfix/mailname string test.local" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x target/sendmail/root/usr/libexec/sendmail/sendmail ]; then
    rm -rf target/sendmail && mkdir -p target/sendmail/debs
    (cd target/sendmail/debs && apt-get download sendmail-bin sendmail-cf sendmail-base 2>/dev/null)
    for deb in target/sendmail/debs/*.deb; do dpkg -x "$deb" target/sendmail/root; done
fi
SM_ROOT=$ROOT/target/sendmail/root
SM=$SM_ROOT/usr/libexec/sendmail/sendmail
CF_DIR=$SM_ROOT/usr/share/sendmail/cf
cargo build --release --quiet --bin cjsm-milter --example noop_milter
CJSM=${CARGO_TARGET_DIR:-$ROOT/target}/release/cjsm-milter
NOOP=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/noop_milter

LAB=$(mktemp -d /tmp/bench-mta.XXXXXX)
chmod 755 "$LAB"   # smtpd runs as postfix and must reach the unix sockets below
RESULTS=$LAB/results.tsv
: > "$RESULTS"

# free_port, wait_*, stop_pid/stop_all (PIDS), start_sink/sink_count, start_postfix/stop_postfix.
source "$ROOT/scripts/lib/mta-lab.sh"
SMTPD_PORT=$(free_port); SINK_PORT=$(free_port); MILTER_PORT=$(free_port)

cleanup() {
    stop_postfix
    stop_all
    if ((KEEP)); then echo "bench-mta.sh: kept $LAB" >&2; else rm -rf "$LAB"; fi
}
trap cleanup EXIT

# --- the milters -------------------------------------------------------------------------------
# start_milter KIND SOCKET DIR -> prints the MTA's socket spec ("inet:PORT@127.0.0.1" for
# Sendmail is derived by the caller).
MILTER_UNIX=""
start_milter() { # kind transport dir
    local kind=$1 transport=$2 dir=$3 spec
    mkdir -p "$dir/sock"
    chmod 755 "$dir"
    if [ "$transport" = inet ]; then
        spec="inet:127.0.0.1:$MILTER_PORT"
    else
        MILTER_UNIX=$dir/sock/milter.sock
        spec="unix:$MILTER_UNIX"
    fi
    case "$kind" in
        cjsm)
            cat > "$dir/cjsm.toml" <<EOF
[milter]
listen = "$spec"
socket_mode = "0666"

[store]
backend = "sqlite"
path = "$dir/store"

[metrics]
listen = ""

# smtp-source does not do STARTTLS, and OFFICIAL-SENSITIVE mail (unmarked mail counts as
# such) to a secure address is refused unless the session used STARTTLS or the client is on
# a secure or trusted network: the benchmark's client plays a server on the secure network.
[routing]
secure_networks = ["127.0.0.0/8"]
EOF
            "$CJSM" --config "$dir/cjsm.toml" run 2> "$dir/milter.log" &
            PIDS+=($!)
            ;;
        noop)
            "$NOOP" "$spec" > "$dir/milter.log" 2>&1 &
            PIDS+=($!)
            ;;
        noopnr)
            "$NOOP" --noreply "$spec" > "$dir/milter.log" 2>&1 &
            PIDS+=($!)
            ;;
        odkim)
            chown opendkim "$dir/sock"
            opendkim-genkey -b 2048 -d test.local -s bench -D "$dir" 2>/dev/null
            echo "bench._domainkey.test.local $(sed -n 's/.*"\(.*\)".*/\1/p' "$dir/bench.txt" | tr -d '\n')" > "$dir/testkeys"
            local socket
            if [ "$transport" = inet ]; then socket="inet:$MILTER_PORT@127.0.0.1"; else socket="local:$MILTER_UNIX"; fi
            cat > "$dir/opendkim.conf" <<EOF
Mode            v
Socket          $socket
Background      no
Syslog          no
PidFile         $dir/opendkim.pid
UserID          opendkim
UMask           000
TestPublicKeys  $dir/testkeys
AlwaysAddARHeader yes
AuthservID      mx.test.local
EOF
            opendkim -f -x "$dir/opendkim.conf" > "$dir/milter.log" 2>&1 &
            PIDS+=($!)
            ;;
    esac
    if [ "$transport" = inet ]; then wait_listening "$MILTER_PORT" "$kind"; else wait_socket "$MILTER_UNIX" "$kind"; fi
}

# --- Sendmail ----------------------------------------------------------------------------------
SM_PID=""
start_sendmail() { # dir milter-spec-or-empty
    local dir=$1 milter=$2 sm=$1/sm filter=""
    mkdir -p "$sm/mqueue" && chmod 700 "$sm/mqueue"
    printf 'hosts files\naliases files\n' > "$sm/service.switch"
    printf 'postmaster: root\nMAILER-DAEMON: postmaster\n' > "$sm/aliases"
    if [ -n "$milter" ]; then
        # The kit's fragment (sendmail/cjsm-milter.mc.fragment): its filter line and macros,
        # with this row's socket (not its TLS and mailertable lines: the benchmark's client
        # does not use TLS and its route is the sink).
        filter=$(grep -E '^(INPUT_MAIL_FILTER|define\(`confMILTER_MACROS_)' sendmail/cjsm-milter.mc.fragment \
            | sed "s|S=local:/run/cjsm-milter/milter.sock|S=$milter|")
    fi
    cat > "$sm/sendmail.mc" <<EOF
divert(-1)
divert(0)dnl
VERSIONID(\`bench instance')dnl
OSTYPE(\`linux')dnl
define(\`confDOMAIN_NAME', \`smx.test.local')dnl
define(\`confDONT_PROBE_INTERFACES', \`True')dnl
define(\`confSERVICE_SWITCH_FILE', \`$sm/service.switch')dnl
define(\`QUEUE_DIR', \`$sm/mqueue')dnl
define(\`confPID_FILE', \`$sm/sendmail.pid')dnl
define(\`STATUS_FILE', \`$sm/statistics')dnl
define(\`HELP_FILE', \`$SM_ROOT/etc/mail/helpfile')dnl
define(\`ALIAS_FILE', \`$sm/aliases')dnl
define(\`confDONT_BLAME_SENDMAIL', \`TrustStickyBit,MapInUnsafeDirPath,HelpFileInUnsafeDirPath')dnl
define(\`confTO_IDENT', \`0')dnl
define(\`confQUEUE_LA', \`100')dnl
define(\`confREFUSE_LA', \`100')dnl
define(\`confDELAY_LA', \`0')dnl
define(\`confMILTER_LOG_LEVEL', \`0')dnl
define(\`SMART_HOST', \`esmtp:[127.0.0.1]')dnl
define(\`ESMTP_MAILER_ARGS', \`TCP \$h $SINK_PORT')dnl
define(\`RELAY_MAILER_ARGS', \`TCP \$h $SINK_PORT')dnl
FEATURE(\`no_default_msa')dnl
FEATURE(\`nocanonify')dnl
FEATURE(\`accept_unresolvable_domains')dnl
FEATURE(\`accept_unqualified_senders')dnl
RELAY_DOMAIN(\`test.example')dnl
RELAY_DOMAIN(\`pnn.police.uk')dnl
DAEMON_OPTIONS(\`Port=$SMTPD_PORT, Addr=127.0.0.1, Name=MTA')dnl
$filter
MAILER(\`local')dnl
MAILER(\`smtp')dnl
EOF
    m4 "-D_CF_DIR_=$CF_DIR/" "$CF_DIR/m4/cf.m4" "$sm/sendmail.mc" > "$sm/sendmail.cf"
    unshare --uts sh -c "hostname smx.test.local; exec $SM -C $sm/sendmail.cf -bi" > /dev/null
    unshare --uts sh -c "hostname smx.test.local; exec $SM -C $sm/sendmail.cf -bD" > "$sm/fg.out" 2>&1 &
    SM_PID=$!
    wait_listening "$SMTPD_PORT" sendmail
}
stop_sendmail() {
    [ -n "$SM_PID" ] || return 0
    stop_pid "$SM_PID"
    SM_PID=""
    wait_closed "$SMTPD_PORT"
}

# --- one measurement ---------------------------------------------------------------------------
now() { date +%s.%N; }

run_row() { # row run
    local row=$1 run=$2 mta=${1%%-*} rest=${1#*-} kind transport="" spec="" dir
    kind=${rest%%-*}
    [ "$kind" != none ] && transport=${rest#*-}
    dir=$LAB/$row-$run
    mkdir -p "$dir"
    chmod 755 "$dir"
    start_sink "$dir"
    if [ "$kind" != none ]; then
        start_milter "$kind" "$transport" "$dir/milter"
        if [ "$mta" = postfix ]; then
            if [ "$transport" = inet ]; then spec="inet:127.0.0.1:$MILTER_PORT"; else spec="unix:$MILTER_UNIX"; fi
        else
            if [ "$transport" = inet ]; then spec="inet:$MILTER_PORT@127.0.0.1"; else spec="local:$MILTER_UNIX"; fi
        fi
    fi
    if [ "$mta" = postfix ]; then start_postfix "$dir" "$spec"; else start_sendmail "$dir" "$spec"; fi

    local started finished count="" last=0 last_change
    started=$(now)
    /usr/sbin/smtp-source -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -f "$FROM" -t "$RCPT" \
        "127.0.0.1:$SMTPD_PORT" > "$dir/source.out" 2>&1 &
    local source_pid=$!
    PIDS+=($source_pid)
    finished=""
    last_change=$(now)
    # Until every message is at the sink; give up after 60 s without progress.
    while :; do
        count=$(sink_count "$dir")
        count=${count:-0}
        if ((count >= MESSAGES)); then finished=$(now); break; fi
        if ((count != last)); then last=$count; last_change=$(now); fi
        if awk -v a="$(now)" -v b="$last_change" 'BEGIN {exit !(a - b > 60)}'; then break; fi
        sleep 0.01
    done
    wait "$source_pid" 2>/dev/null || true
    local rate="FAILED"
    if [ -n "$finished" ]; then
        rate=$(awk -v n="$MESSAGES" -v a="$started" -v b="$finished" 'BEGIN {printf "%.1f", n / (b - a)}')
    else
        echo "bench-mta.sh: $row run $run: only $count of $MESSAGES messages reached the sink (see $dir)" >&2
        KEEP=1
    fi
    printf '%s\t%s\t%s\n' "$row" "$run" "$rate" >> "$RESULTS"
    printf '%-22s run %s: %s msgs/s\n' "$row" "$run" "$rate"
    if [ "$mta" = postfix ]; then stop_postfix; else stop_sendmail; fi
    stop_all
    wait_closed "$SINK_PORT"
    [ "$transport" = inet ] && wait_closed "$MILTER_PORT"
    if ((KEEP == 0)); then rm -rf "$dir"; fi
}

ROWS=()
for mta in postfix sendmail; do
    for m in none cjsm-inet cjsm-unix noop-inet noop-unix odkim-inet odkim-unix ${ALSO[@]+"${ALSO[@]}"}; do
        row=$mta-$m
        if ((${#ONLY[@]})); then
            keep=0
            for o in "${ONLY[@]}"; do [[ $row == *$o* ]] && keep=1; done
            ((keep)) || continue
        fi
        ROWS+=("$row")
    done
done

echo "# bench-mta: $MESSAGES x $SIZE bytes, $SESSIONS sessions, $RUNS runs per row; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
for run in $(seq 1 "$RUNS"); do
    for row in "${ROWS[@]}"; do
        run_row "$row" "$run"
    done
done

# --- the table ---------------------------------------------------------------------------------
echo
echo "| MTA | milter | socket | msgs/s (median) | min-max | ratio vs no milter | runs |"
echo "|---|---|---|---|---|---|---|"
median_of() { # row
    awk -F'\t' -v r="$1" '$1 == r && $3 != "FAILED" {print $3}' "$RESULTS" | sort -n \
        | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]; else print "FAILED"}'
}
for row in "${ROWS[@]}"; do
    mta=${row%%-*}; rest=${row#*-}; kind=${rest%%-*}; transport=-
    [ "$kind" != none ] && transport=${rest#*-}
    runs=$(awk -F'\t' -v r="$row" '$1 == r {printf "%s%s", sep, $3; sep=" / "}' "$RESULTS")
    med=$(median_of "$row")
    range=$(awk -F'\t' -v r="$row" '$1 == r && $3 != "FAILED" {print $3}' "$RESULTS" | sort -n | sed -n '1p;$p' | paste -sd- -)
    base=$(median_of "$mta-none")
    ratio="-"
    if [[ $med != FAILED && $base != FAILED && -n $base ]]; then ratio=$(awk -v a="$med" -v b="$base" 'BEGIN {printf "%.2f", a / b}'); fi
    case "$kind" in
        none) name="none" ;; cjsm) name="cjsm-milter" ;; noop) name="no-op indymilter" ;; odkim) name="OpenDKIM (verify)" ;;
        noopnr) name="no-op indymilter, no-reply stages" ;;
    esac
    echo "| ${mta^} | $name | $transport | $med | $range | $ratio | $runs |"
done
