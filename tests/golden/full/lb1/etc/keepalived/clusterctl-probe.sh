#!/bin/sh
# clusterctl: is this member's own listener answering? (keepalived vrrp_script; rendered by
# clusterctl, do not edit). $1 scheme (http|https|tcp), $2 address, $3 port, $4 path.
case $1 in
tcp) exec timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$2" "$3" ;;
*) exec curl -s -k -o /dev/null --max-time 2 -- "$1://$2:$3$4" ;;
esac
