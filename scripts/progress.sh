#!/usr/bin/env bash
# Pass pip's output through and print a heartbeat while a long build is silent.
start=$SECONDS
while true; do
  if IFS= read -r -t 30 line; then
    printf '%s\n' "$line"
  elif [ $? -gt 128 ]; then
    printf '    ... still building (%d min elapsed)\n' $(((SECONDS - start) / 60))
  else
    break
  fi
done
