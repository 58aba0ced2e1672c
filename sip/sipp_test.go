package sip

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/internal/sipptest"
)

// sippPeer is a SIPp process running one scenario as UAS on 127.0.0.1.
type sippPeer struct {
	*sipptest.Peer
	t     *testing.T
	Trunk Trunk
}

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort(t *testing.T) int { return sipptest.FreeUDPPort(t) }

// startSIPp runs sipp with scenario (under testdata) for one call and waits
// until its SIP port is bound. Extra args are appended.
func startSIPp(t *testing.T, scenario string, args ...string) *sippPeer {
	t.Helper()
	p := sipptest.Start(t, sipptest.Options{Scenario: filepath.Join("testdata", scenario), Args: args, Timeout: 20 * time.Second})
	return &sippPeer{Peer: p, t: t, Trunk: Trunk{Host: "127.0.0.1", Port: p.Port}}
}

// wait waits for SIPp to finish and fails the test unless the scenario
// passed (exit code 0).
func (p *sippPeer) wait() {
	p.t.Helper()
	p.Wait(p.t)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
