#!/bin/bash
# clusterctl: is this member's own listener answering? (keepalived vrrp_script; rendered by
# clusterctl, do not edit). $1 scheme (http|https|tcp), $2 address, $3 port, $4 path;
# $5 ms between asks within one run, $6 failures in a row that fail it, $7 the file keeping
# that count from one run to the next (0 0 -: ask once, keepalived counting).
# keepalived 2.2.7 starts a script at most once a second and skips a start while one runs, so
# a sub-second probe asks every $5 ms until its next ask would begin past 950 ms, and counts
# failures in a row across runs: the run that reaches $6 fails (keepalived: fall 1).
ask() { # $5: seconds an ask may take
  case $1 in
  tcp) h=${2#[}; h=${h%]}; timeout "$5" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$h" "$3" ;;
  *) curl -s -k -o /dev/null --max-time "$5" -- "$1://$2:$3$4" ;;
  esac
}
[ "${5:-0}" -gt 0 ] || { ask "$1" "$2" "$3" "$4" 2; exit; }
clock() {
  if [ -n "${EPOCHREALTIME:-}" ]; then t=${EPOCHREALTIME//[!0-9]/}; now=$((t / 1000)); else now=$(date +%s%3N); fi
}
seconds() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
every=$5 fall=$6 state=$7
# An ask may take its interval, and never less than 300 ms: a loaded host is not a dead one.
limit=$(seconds $((every > 300 ? every : 300)))
pause=$(seconds "$every")
bad=$(cat -- "$state" 2>/dev/null); case $bad in '' | *[!0-9]*) bad=0 ;; esac
clock; end=$((now + 950))
while :; do
  if ask "$1" "$2" "$3" "$4" "$limit"; then bad=0; else bad=$((bad + 1)); fi
  if [ "$bad" -ge "$fall" ]; then echo "$bad" > "$state"; exit 1; fi
  clock
  if [ $((now + every)) -ge "$end" ]; then echo "$bad" > "$state"; exit 0; fi
  sleep "$pause"
done
