#!/usr/bin/env bash
# Which system calls does the daemon make, and are they all in the systemd unit's allow list
# (SystemCallFilter=@system-service)? The test binaries that start `cjsm-milter run` (milter
# conversations over TCP and unix sockets, SIGHUP, SIGTERM, the socketmap, /metrics, the drop
# from root) are run under `strace -f -ff`; the calls of every cjsm-milter process and its
# threads are gathered and compared with `systemd-analyze syscall-filter @system-service`.
# Needs strace, systemd (systemd-analyze) and python3; run as root from the repository root,
# after `cargo test --no-run`. Exits 1 if a call is outside the list.
set -euo pipefail
target=${CARGO_TARGET_DIR:-target}
traces=$(mktemp -d)
trap 'rm -rf "$traces"' EXIT
for test in daemon privilege socketmap metrics; do
    # The newest build of the test binary (cargo keeps older ones, and .d files, beside it).
    binary=""
    for candidate in "$target"/debug/deps/"$test"-*; do
        [[ -x $candidate && ! -d $candidate ]] || continue
        [[ -z $binary || $candidate -nt $binary ]] && binary=$candidate
    done
    [ -n "$binary" ] || { echo "syscalls.sh: no $test test binary: cargo test --no-run" >&2; exit 1; }
    strace -f -ff -qq -o "$traces/$test" "$binary" >/dev/null 2>&1 || {
        echo "syscalls.sh: $test failed under strace" >&2
        exit 1
    }
done
python3 - "$traces" <<'EOF'
import glob, re, subprocess, sys

calls, children, programs = {}, {}, {}
for path in glob.glob(sys.argv[1] + "/*.*"):
    task = int(path.rsplit(".", 1)[1])
    names = set()
    for line in open(path, errors="replace"):
        if m := re.match(r"^(\w+)\(", line):
            names.add(m.group(1))
        if m := re.match(r"^(?:clone3?|fork|vfork)\(.*\)\s*=\s*(\d+)", line):
            children.setdefault(task, []).append(int(m.group(1)))
        if line.startswith("execve(") and line.rstrip().endswith("= 0"):
            programs[task] = line.split('"')[1]
    calls[task] = names

def daemon(task):
    return programs.get(task, "").endswith("/cjsm-milter")

tasks, todo = set(), [t for t in programs if daemon(t)]
daemons = len(todo)
while todo:
    task = todo.pop()
    if task not in tasks:
        tasks.add(task)
        todo += [c for c in children.get(task, []) if c not in programs or daemon(c)]
used = set().union(*(calls.get(t, set()) for t in tasks)) - {"execve"}

def expand(name):
    if not name.startswith("@"):
        return {name}
    text = subprocess.run(["systemd-analyze", "syscall-filter", name],
                          capture_output=True, text=True, check=True).stdout
    words = [w.strip() for w in text.splitlines()[1:]]
    return set().union(*(expand(w) for w in words if w and not w.startswith("#")))

outside = sorted(used - expand("@system-service"))
print(f"{daemons} daemon runs, {len(tasks)} processes and threads, {len(used)} distinct "
      f"system calls; outside @system-service: {', '.join(outside) or 'none'}")
sys.exit(1 if outside else 0)
EOF
