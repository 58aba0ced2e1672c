package sip

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// sippPeer is a SIPp process running one scenario as UAS on 127.0.0.1.
type sippPeer struct {
	t     *testing.T
	Trunk Trunk
	cmd   *exec.Cmd
	out   bytes.Buffer
	done  chan struct{}
	err   error
	once  sync.Once
}

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startSIPp runs sipp with scenario (under testdata) for one call and waits
// until its SIP port is bound. Extra args are appended.
func startSIPp(t *testing.T, scenario string, args ...string) *sippPeer {
	t.Helper()
	bin, err := exec.LookPath("sipp")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sipp not on PATH: .ci/run must install sip-tester")
		}
		t.Skip("sipp not on PATH (apt-get install -y sip-tester)")
	}
	port, mport := freeUDPPort(t), freeUDPPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	all := append([]string{
		"-sf", filepath.Join("testdata", scenario),
		"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-mp", strconv.Itoa(mport),
		"-m", "1", "-nostdin", "-timeout", "20s", "-timeout_error",
		"-trace_err", "-error_file", filepath.Join(t.TempDir(), "errors.log"),
	}, args...)
	p := &sippPeer{t: t, Trunk: Trunk{Host: "127.0.0.1", Port: port}, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, bin, all...)
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.out
	p.cmd.Dir = "."
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start sipp: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		cancel()
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	// Ready once the port is taken. Another process binding a port signals nothing, so try to bind
	// it every 10 ms; SIPp exiting ends the wait at once.
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for portFree(port) {
		select {
		case <-tick.C:
		case <-p.done:
			t.Fatalf("sipp exited before it bound 127.0.0.1:%d: %v\n%s", port, p.err, p.out.String())
		case <-deadline.C:
			t.Fatalf("sipp did not bind 127.0.0.1:%d within 5s", port)
		}
	}
	return p
}

// portFree reports whether UDP port on 127.0.0.1 can be bound, that is whether no process holds it.
func portFree(port int) bool {
	c, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// wait waits for SIPp to finish and fails the test unless the scenario
// passed (exit code 0).
func (p *sippPeer) wait() {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(22 * time.Second):
		p.t.Fatal("sipp did not finish")
	}
	if p.err != nil {
		var ee *exec.ExitError
		code := -1
		if errors.As(p.err, &ee) {
			code = ee.ExitCode()
		}
		p.t.Fatalf("sipp scenario failed (exit %d): %v\n%s", code, p.err, tail(p.out.String(), 3000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
