//go:build race

package main

// ciLoadCalls is smaller under the race detector, which slows the phones'
// recognisers several times over; scripts/test.sh runs the full 200 calls
// without it.
const ciLoadCalls = 60
