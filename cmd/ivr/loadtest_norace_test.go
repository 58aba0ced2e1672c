//go:build !race

package main

// ciLoadCalls is the CI load test's size: 200 calls at 20 per second.
const ciLoadCalls = 200
