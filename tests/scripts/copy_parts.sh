#!/bin/bash
# Reports progress as plain text lines ("DONE/TOTAL message") when a worker asks for them.
for i in 1 2 3 4 5; do
  sleep 0.25
  if [ -n "$SCRIPTRUN_PROGRESS_FD" ]; then echo "$i/5 copying part $i" >&"$SCRIPTRUN_PROGRESS_FD"; fi
done
echo "copied 5 parts"
