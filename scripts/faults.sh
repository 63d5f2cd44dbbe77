#!/usr/bin/env bash
# The fault matrix in its long form (RELIABILITY.md, "The fault matrix"): a private Postfix
# with the milter and real redis-servers, CJSM_FAULT_MESSAGES messages per row (default 2000)
# from parallel SMTP clients, one fault per row; prints the table. Run as root (it starts
# Postfix and mounts a small tmpfs), with the packages scripts/test.sh installs.
#   scripts/faults.sh                                   every row
#   CJSM_FAULT_ROWS=redis-kill,sentinel scripts/faults.sh   only those rows
# Row keys: milter-kill milter-drain sighup file-corrupt disk-full redis-kill redis-empty
# redis-stop redis-slow sentinel. The short form runs in scripts/test.sh (cargo test).
set -euo pipefail
cd "$(dirname "$0")/.."
export CJSM_FAULT_MESSAGES="${CJSM_FAULT_MESSAGES:-2000}"
table="$(mktemp)"
trap 'rm -f "$table"' EXIT
status=0
CJSM_FAULT_TABLE="$table" cargo test --locked --test faults -- --nocapture || status=$?
echo
echo "The fault matrix, $CJSM_FAULT_MESSAGES messages per row:"
cat "$table"
exit "$status"
