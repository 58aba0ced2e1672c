#!/usr/bin/env bash
# Runs one load test of BENCHMARKS.md: the server under test in its own
# process on 127.0.0.1, `ivr loadtest` in another, sampling the server's CPU
# and memory by pid. Binaries and reports (NAME.json, NAME.html, NAME.out) go
# to $BENCH_OUT, by default /tmp/voiceotp-bench.
#
#   bench/diago/bench.sh ivr   conc200 --calls 200 --cps 20 --mix answer=1 --press-delay 20s
#   bench/diago/bench.sh diago conc200 --calls 200 --cps 20 --mix answer=1 --press-delay 20s
#
# KEY_TIMEOUT (default 5s) is the servers' wait for the key; the concurrency
# runs hold calls open with --press-delay 20s and KEY_TIMEOUT=30s. MEDIA
# (socket or dense, default socket) is our server's media.mode, MAX_CPU
# (default 0.9) its dispatch.max_cpu, CPU_SOURCE (default process) its
# dispatch.cpu_source, MAX_CONCURRENT (default 5000) its
# dispatch.max_concurrent; the phones' mode is the load tester's
# --phone-media flag.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=$1 name=$2
shift 2
out=${BENCH_OUT:-/tmp/voiceotp-bench}
mkdir -p "$out"
go build -o "$out/ivr" ./cmd/ivr
(cd bench/diago && go build -o "$out/diago-ivr" .)
key=bench_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
kt=${KEY_TIMEOUT:-5s}
case $target in
ivr)
  api=127.0.0.1:18080
  "$out/ivr" serve --listen $api --sip.listen 127.0.0.1:15060 --trunk sip:127.0.0.1:15090 --api_keys "$key" \
    --media.ports 10000-29999 --call.ring_timeout 3s --call.key_timeout "$kt" --call.repeat_wait 1s \
    --dispatch.max_concurrent "${MAX_CONCURRENT:-5000}" --dispatch.cps 1000 --dispatch.drain_timeout 5s --log.level error \
    --media.mode "${MEDIA:-socket}" --dispatch.max_cpu "${MAX_CPU:-0.9}" --dispatch.cpu_source "${CPU_SOURCE:-process}" 2>"$out/$name.serve.log" &
  ;;
diago)
  api=127.0.0.1:18081
  "$out/diago-ivr" --listen $api --sip 127.0.0.1:15061 --trunk 127.0.0.1:15090 --ring-timeout 3s \
    --key-timeout "$kt" --repeat-wait 1s 2>"$out/$name.serve.log" &
  ;;
*) echo "target: ivr or diago" >&2; exit 2 ;;
esac
spid=$!
trap 'kill $spid 2>/dev/null; wait $spid 2>/dev/null || true' EXIT
sleep 0.5
rc=0
"$out/ivr" loadtest --api "http://$api" --api-key "$key" --phone-listen 127.0.0.1:15090 --server-pid $spid \
  --json "$out/$name.json" --html "$out/$name.html" --progress-every 10s "$@" >"$out/$name.out" || rc=$?
cat "$out/$name.out"
exit $rc
