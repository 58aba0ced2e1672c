//go:build !race

package main

import "time"

// Sizes of TestClusterNodeKilled without the race detector.
const (
	clusterVerifications = 300
	clusterConcurrent    = 40
	clusterCPS           = 30
	clusterTTL           = 100 * time.Second
)
