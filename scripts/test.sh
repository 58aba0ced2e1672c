#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it).
# It installs the real peers the tests need, then runs every test. On a
# fresh Debian machine with Go installed:
#
#     ./scripts/test.sh
#
# Peers, started by the tests themselves on 127.0.0.1: SIPp (Debian package
# sip-tester) as the callee, Kamailio (kamailio, kamailio-tls-modules) as a
# registrar and authenticating proxy, and redis-server for the shared store.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v kamailio >/dev/null 2>&1 || need+=(kamailio)
[ -e /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so ] || ls /usr/lib/*/kamailio/modules/tls.so >/dev/null 2>&1 || need+=(kamailio-tls-modules)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
export CI="${CI:-true}" # a missing peer fails the suite instead of skipping it

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
# The CI load test at full size, without the race detector (first, so that
# go test's summary closes the output): 200 calls at 20/s
# with the default mix; it fails on any unexpected outcome or unrecognised code.
# It runs once with a socket per call and once in the dense media mode (shared
# RTP sockets on both sides, told apart by SSRC).
go build -o "${TMPDIR:-/tmp}/ivr-ci" ./cmd/ivr
for mode in socket dense; do
  "${TMPDIR:-/tmp}/ivr-ci" loadtest --spawn --calls 200 --cps 20 --answer-delay 100ms-500ms --ring-timeout 2s \
    --key-timeout 2s --tries 2 --repeat-wait 300ms --phone-media $mode --server-media $mode
done
# Every package runs under the race detector: calls, queues and servers are
# all goroutines. The call tests place real calls (SIPp, the virtual phone)
# on 127.0.0.1 and bound every wait.
go test -race -count=1 -parallel 8 -timeout 12m ./...
