# shellcheck shell=bash
# Shared by scripts/bench-mta.sh and scripts/soak.sh (sourced, not run): free loopback ports,
# waiting for listeners, stopping what we started by PID, smtp-sink, and a private Postfix
# instance on loopback relaying to the sink.
#
# The caller sets LAB (a scratch directory), SMTPD_PORT and SINK_PORT (free_port gives them),
# and may set PF_EXTRA_MAIN (lines appended to main.cf, e.g. a higher process limit) before
# start_postfix. Messages are prefixed with the calling script's name.
LAB_NAME=${0##*/}

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_listening() { # port what
    for _ in $(seq 1 1500); do listening "$1" && return 0; sleep 0.01; done
    echo "$LAB_NAME: $2 did not listen on $1" >&2; return 1
}
wait_closed() { # port
    for _ in $(seq 1 500); do listening "$1" || return 0; sleep 0.01; done
    echo "$LAB_NAME: port $1 still open" >&2; return 1
}
wait_socket() { # path what
    for _ in $(seq 1 1500); do [ -S "$1" ] && return 0; sleep 0.01; done
    echo "$LAB_NAME: $2 did not create $1" >&2; return 1
}

# Processes we started, stopped by PID (SIGTERM, then SIGKILL after 10 s).
PIDS=()
stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 1000); do kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}
stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
}

# --- smtp-sink ---------------------------------------------------------------------------------
SINK_PID=""
start_sink() { # dir
    /usr/sbin/smtp-sink -u nobody -c "127.0.0.1:$SINK_PORT" 256 > "$1/sink.out" 2>&1 &
    SINK_PID=$!
    PIDS+=("$SINK_PID")
    wait_listening "$SINK_PORT" smtp-sink
}
sink_count() { # dir
    tr '\r' '\n' < "$1/sink.out" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2
}

# --- Postfix -----------------------------------------------------------------------------------
PF_CHILD=""
PF_ETC=""
start_postfix() { # dir milter-spec-or-empty
    local dir=$1 milter=$2
    mkdir -p "$dir/pf/etc" "$dir/pf/spool" "$dir/pf/data"
    chown postfix "$dir/pf/data"
    PF_ETC=$dir/pf/etc
    {
        cat <<EOF
compatibility_level = 3.6
queue_directory = $dir/pf/spool
data_directory = $dir/pf/data
maillog_file = $dir/pf/maillog
maillog_file_prefixes = /var, /dev/stdout, $LAB
myhostname = mx.test.local
mydomain = test.local
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
relay_domains = test.example, pnn.police.uk
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relayhost = [127.0.0.1]:$SINK_PORT
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
biff = no
EOF
        if [ -n "$milter" ]; then
            # The kit's milter settings (postfix/main.cf.fragment up to its TLS section: the
            # benchmark's client does not use TLS and its routes are the sink), the same for
            # every milter, with this row's socket.
            sed -n '1,/^# --- TLS in/p' postfix/main.cf.fragment \
                | grep -Ev '^(smtpd_milters|non_smtpd_milters|#)' | grep -v '^$'
            echo "smtpd_milters = $milter"
            echo "non_smtpd_milters ="
        fi
        if [ -n "${PF_EXTRA_MAIN:-}" ]; then echo "$PF_EXTRA_MAIN"; fi
    } > "$PF_ETC/main.cf"
    cat > "$PF_ETC/master.cf" <<EOF
$SMTPD_PORT inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
EOF
    postfix -c "$PF_ETC" check
    postfix -c "$PF_ETC" start-fg > "$dir/pf/fg.out" 2>&1 &
    PF_CHILD=$!
    wait_listening "$SMTPD_PORT" postfix
}
stop_postfix() {
    [ -n "$PF_CHILD" ] || return 0
    local master
    master=$(tr -d ' ' < "$PF_ETC/../spool/pid/master.pid" 2>/dev/null || true)
    if [ -n "$master" ]; then
        kill -TERM "$master" 2>/dev/null || true
        for _ in $(seq 1 1000); do kill -0 -- "-$master" 2>/dev/null || break; sleep 0.01; done
        kill -0 -- "-$master" 2>/dev/null && kill -KILL -- "-$master" 2>/dev/null
    fi
    stop_pid "$PF_CHILD"
    PF_CHILD=""
    wait_closed "$SMTPD_PORT"
}
