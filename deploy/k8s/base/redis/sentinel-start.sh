#!/bin/sh
# Starts one sentinel of the redis-sentinel StatefulSet: it finds the
# primary (find-primary.sh; ordinal 0 of the redis StatefulSet at the very
# first start), waits until it answers, and writes its configuration into a
# writable directory, since a sentinel rewrites its own file as it learns
# about replicas, other sentinels and failovers.
#
# Environment: see find-primary.sh, and QUORUM, DOWN_AFTER_MS,
# FAILOVER_TIMEOUT_MS, SENTINEL_HEADLESS_SERVICE.
set -eu
. /etc/redis/find-primary.sh
self="$(hostname).${SENTINEL_HEADLESS_SERVICE}"

master=$(find_primary)
[ -n "$master" ] || master="${REDIS_STATEFULSET}-0.${REDIS_HEADLESS_SERVICE}"

# A sentinel refuses to monitor a name it cannot resolve: wait (up to two
# minutes) for the primary to answer, then start anyway and let the
# kubelet restart the container if it still cannot.
i=0
until timeout 3 redis-cli --no-auth-warning -a "$REDIS_PASSWORD" -h "$master" -p 6379 ping 2>/dev/null | grep -q PONG; do
  i=$((i + 1))
  [ "$i" -lt 60 ] || break
  sleep 2
done

conf=/run/sentinel/sentinel.conf
umask 077
cat >"$conf" <<CONF
port 26379
dir /run/sentinel
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $self
sentinel monitor $MASTER_NAME $master 6379 $QUORUM
sentinel auth-pass $MASTER_NAME $REDIS_PASSWORD
sentinel down-after-milliseconds $MASTER_NAME $DOWN_AFTER_MS
sentinel failover-timeout $MASTER_NAME $FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $MASTER_NAME 1
CONF
echo "sentinel-start: $self monitors $MASTER_NAME at $master (quorum $QUORUM)"
exec redis-server "$conf" --sentinel
