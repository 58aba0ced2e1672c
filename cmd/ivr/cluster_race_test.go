//go:build race

package main

import "time"

// Sizes of TestClusterNodeKilled under the race detector, which makes each
// call several times more expensive on the machine that runs both nodes,
// the phone and the test.
const (
	clusterVerifications = 120
	clusterConcurrent    = 20
	clusterCPS           = 15
	clusterTTL           = 100 * time.Second
)
