#!/usr/bin/env bash
# The per-attempt supervisor of a shell task (see src/plugins/shell-containment.ts).
#   shell-supervisor.sh WATCHDOG_SECONDS COMMAND...
# Runs COMMAND and waits for it. Its stdin is the worker's keepalive pipe: the worker writes a byte
# each time it renews the attempt's lease. When no byte arrives for WATCHDOG_SECONDS (the worker is
# stopped, or cut off from the database) or the pipe reaches EOF (the worker died), the watcher
# SIGKILLs the whole process group. Inside a PID namespace this script is its init, so its death
# also kills everything the command started, even processes that left the group with setsid.
# This does not depend on the worker's event loop being scheduled: it is its own process.
set -u
watchdog=$1
shift

# Background jobs get /dev/null as stdin, so the watcher reads the keepalive pipe as fd 3.
exec 3<&0
"$@" </dev/null 3<&- &
task=$!

# The worker signals the whole process group, the command included, so the supervisor only has to
# outlive the command to report its status: a no-op handler (not SIG_IGN, which the command would
# inherit) keeps SIGTERM from ending it first.
trap ':' TERM INT

# A paused task's whole group, this watcher included, is stopped (SIGSTOP) and later continued
# (SIGCONT) while the worker keeps writing keepalive bytes. A read timeout that ends right after
# such a stop (the timer ran on while we were stopped) is therefore only silence if there is
# nothing to read: `read -t 0` succeeds when bytes are waiting.
(
  while :; do
    IFS= read -r -u 3 -n 1 -t "$watchdog" _
    rc=$?
    [ "$rc" -eq 0 ] && continue
    if [ "$rc" -gt 128 ] && read -r -u 3 -t 0; then continue; fi
    break
  done
  kill -KILL 0
) &
watcher=$!

while :; do
  wait "$task"
  status=$?
  kill -0 "$task" 2>/dev/null || break
done
kill "$watcher" 2>/dev/null
exit "$status"
