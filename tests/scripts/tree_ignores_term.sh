#!/usr/bin/env bash
# A script whose whole tree ignores SIGTERM: a child and a grandchild that trap it.
# Writes their pids to $pidfile, then waits forever.
# /// scriptrun
# description = "A process tree that ignores SIGTERM"
# timeout = 600
# [parameters.pidfile]
# type = "string"
# required = true
# ///
pidfile=$(python3 -c 'import json,os; print(json.loads(os.environ["SCRIPT_PARAMETERS"])["pidfile"])')
trap '' TERM
bash -c 'trap "" TERM; sleep 1000 & echo $! >> "$1"; echo $$ >> "$1"; wait' _ "$pidfile" &
echo $$ >> "$pidfile"
echo "tree started"
wait
