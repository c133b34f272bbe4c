#!/bin/sh
# Starts one Redis of the redis StatefulSet: as a replica of the primary
# that find_primary names, or, when there is none (the very first start of
# the set), ordinal 0 as the primary and the others as its replicas.
# Restarted after a failover, the old primary thus comes back as a replica
# instead of as a second primary.
#
# Environment: see find-primary.sh, and REDIS_MAXMEMORY.
set -eu
. /etc/redis/find-primary.sh
self="$(hostname).${REDIS_HEADLESS_SERVICE}"

master=$(find_primary "$self")
[ -n "$master" ] || master="${REDIS_STATEFULSET}-0.${REDIS_HEADLESS_SERVICE}"

conf=/run/redis/redis.conf
umask 077
{
  echo "include /etc/redis/redis.conf"
  echo "requirepass \"$REDIS_PASSWORD\""
  echo "masterauth \"$REDIS_PASSWORD\""
  # Sentinels and clients reach the node by its stable DNS name, not the
  # pod's address, which changes when the pod is rescheduled.
  echo "replica-announce-ip $self"
  echo "maxmemory $REDIS_MAXMEMORY"
  if [ "$master" != "$self" ]; then
    echo "replicaof $master 6379"
  fi
} >"$conf"
if [ "$master" = "$self" ]; then
  echo "redis-start: $self starts as the primary"
else
  echo "redis-start: $self starts as a replica of $master"
fi
exec redis-server "$conf"
