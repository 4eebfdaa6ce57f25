#!/bin/bash
# Creates the homeserver's log stream replicated on every node of the NATS cluster
# (or raises an existing stream's replicas) before any homeserver service starts.
#
#   nats-stream.sh HOST:PORT REPLICAS
#
# The services create the stream themselves when it is missing, with one replica;
# in a cluster it must have three so that losing a node loses nothing. The config
# below is the one crates/log creates (stream_config), plus num_replicas; the
# services check it again at start-up. No NATS client is installed in the images,
# so this speaks the NATS protocol over bash's /dev/tcp: JetStream's API is plain
# request/reply on $JS.API.* subjects.
set -euo pipefail
addr=${1:?HOST:PORT}
replicas=${2:-3}
stream=${HOMESERVER_NATS_STREAM:-HS_EVENTS}
prefix=${HOMESERVER_NATS_SUBJECT_PREFIX:-hs}
config=$(printf '{"name":"%s","subjects":["%s.>"],"retention":"limits","max_consumers":-1,"max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msgs_per_subject":-1,"max_msg_size":-1,"discard":"new","storage":"file","num_replicas":%d,"duplicate_window":120000000000,"deny_delete":true,"deny_purge":true,"allow_direct":true}' \
    "$stream" "$prefix" "$replicas")

# request SUBJECT PAYLOAD: prints the reply's payload.
request() {
    local subject=$1 payload=$2 line
    exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}"
    read -r -t 5 line <&3 # INFO
    printf 'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.hs 1\r\nPUB %s _INBOX.hs %d\r\n%s\r\n' \
        "$subject" "${#payload}" "$payload" >&3
    while read -r -t 10 line <&3; do
        line=${line%$'\r'}
        case $line in
        PING) printf 'PONG\r\n' >&3 ;;
        MSG*)
            read -r -t 5 line <&3
            printf '%s\n' "${line%$'\r'}"
            break
            ;;
        -ERR*) printf '%s\n' "$line" ;;
        esac
    done
    exec 3<&-
}

for attempt in $(seq 1 60); do
    reply=$(request "\$JS.API.STREAM.INFO.$stream" '' 2>/dev/null || true)
    if [[ $reply == *'"num_replicas":'"$replicas"[,}]* && $reply != *'"error"'* ]]; then
        echo "stream $stream: $replicas replicas"
        exit 0
    elif [[ $reply == *'"err_code":10059'* ]]; then # stream not found
        reply=$(request "\$JS.API.STREAM.CREATE.$stream" "$config" 2>/dev/null || true)
    elif [[ $reply == *'"config"'* ]]; then
        reply=$(request "\$JS.API.STREAM.UPDATE.$stream" "$config" 2>/dev/null || true)
    fi
    echo "attempt $attempt: ${reply:0:200}" >&2
    sleep 2
done
echo "stream $stream: not replicated $replicas times after 60 attempts" >&2
exit 1
