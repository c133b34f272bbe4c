# Sourced by redis-start.sh and sentinel-start.sh: find_primary prints the
# DNS name of the current Redis primary, or nothing when no one knows.
# First the sentinels are asked (they follow failovers); when none answers
# (the first start, or every sentinel restarted at once), each Redis node
# is asked for its role, so that a node promoted by a failover stays the
# primary instead of ordinal 0 taking the role back.
#
# Environment: REDIS_PASSWORD, MASTER_NAME, SENTINEL_SERVICE,
# REDIS_STATEFULSET, REDIS_HEADLESS_SERVICE, REDIS_REPLICAS.
find_primary() {
  out=$(timeout 5 redis-cli -h "$SENTINEL_SERVICE" -p 26379 --raw \
    sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null) || out=""
  primary=$(printf '%s\n' "$out" | head -n 1)
  if [ -n "$primary" ]; then
    echo "$primary"
    return
  fi
  i=0
  while [ "$i" -lt "$REDIS_REPLICAS" ]; do
    node="${REDIS_STATEFULSET}-${i}.${REDIS_HEADLESS_SERVICE}"
    if [ "$node" != "${1:-}" ] &&
      timeout 3 redis-cli --no-auth-warning -a "$REDIS_PASSWORD" -h "$node" -p 6379 \
        info replication 2>/dev/null | grep -q '^role:master'; then
      echo "$node"
      return
    fi
    i=$((i + 1))
  done
}
