#!/usr/bin/env bash
# Make sure a Redis answers on 127.0.0.1:6379 (tests use it); start one without persistence if not.
set -euo pipefail
if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then exit 0; fi
if ! command -v redis-server >/dev/null; then
  echo "Redis is not running on 127.0.0.1:6379 and redis-server is not installed" \
       "(Debian/Ubuntu: apt-get install redis-server)." >&2
  exit 1
fi
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
  --dir /tmp --logfile /tmp/conscience-redis.log
for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && exit 0; sleep 0.1; done
echo "Redis did not start (see /tmp/conscience-redis.log)" >&2
exit 1
