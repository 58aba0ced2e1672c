// Package sipptest runs SIPp (the Debian package sip-tester) as the real SIP peer of a test: one
// process per call, on 127.0.0.1, started on a free port and waited for.
//
// It owns only the SIPp processes of tests; it is imported by _test.go files only (sip, callflow and
// cmd/ivr), and imports no other package of the project. A missing sipp skips the test on a developer
// machine and fails it when the environment variable CI is set, so CI never passes by skipping.
package sipptest

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Require returns the path of sipp, or skips (fails with CI set) the test when it is missing.
func Require(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sipp")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sipp not found: .ci/run must install sip-tester")
		}
		t.Skip("sipp not found (apt-get install -y sip-tester)")
	}
	return p
}

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// PortFree reports whether UDP port on 127.0.0.1 can be bound, that is whether no process holds it.
func PortFree(port int) bool {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Options say how to run one SIPp UAS.
type Options struct {
	// Scenario is the scenario file (-sf); a relative path is taken from the test's directory.
	Scenario string
	// Files are written into SIPp's working directory before it starts (a dtmf.pcap, say).
	Files map[string][]byte
	// Keys become -key name value (the scenario's [name] keywords).
	Keys map[string]string
	// Args are appended to the command line.
	Args []string
	// Timeout is SIPp's -timeout (with -timeout_error); the process is killed 20 s after it. If zero,
	// 40 s.
	Timeout time.Duration
	// TraceMessages writes every message SIPp sends or receives, with its time, for Received.
	TraceMessages bool
	// Calls is how many calls SIPp handles before it exits (-m). If zero, 1.
	Calls int
}

// Peer is one SIPp process running one scenario as UAS on 127.0.0.1 for Options.Calls calls.
type Peer struct {
	// Port is SIPp's SIP port on 127.0.0.1.
	Port int
	// Dir is SIPp's working directory, where its logs go.
	Dir string

	timeout time.Duration
	out     bytes.Buffer // SIPp's output; read only once done is closed (exec has finished copying)
	done    chan struct{}
	err     error // set before done is closed
}

// Start runs SIPp with o and returns once its SIP port is bound. The test's cleanup stops it.
func Start(t *testing.T, o Options) *Peer {
	t.Helper()
	bin := Require(t)
	scen, err := filepath.Abs(o.Scenario)
	if err != nil {
		t.Fatal(err)
	}
	if o.Timeout <= 0 {
		o.Timeout = 40 * time.Second
	}
	if o.Calls <= 0 {
		o.Calls = 1
	}
	p := &Peer{Port: FreeUDPPort(t), Dir: t.TempDir(), timeout: o.Timeout, done: make(chan struct{})}
	for name, b := range o.Files {
		if err := os.WriteFile(filepath.Join(p.Dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"-sf", scen, "-i", "127.0.0.1", "-p", strconv.Itoa(p.Port),
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(FreeUDPPort(t)), "-m", strconv.Itoa(o.Calls), "-nostdin",
		"-timeout", strconv.Itoa(int(o.Timeout.Seconds())) + "s", "-timeout_error",
		"-trace_err", "-error_file", filepath.Join(p.Dir, "errors.log")}
	if o.TraceMessages {
		args = append(args, "-trace_msg", "-message_file", filepath.Join(p.Dir, "messages.log"))
	}
	for k, v := range o.Keys {
		args = append(args, "-key", k, v)
	}
	args = append(args, o.Args...)
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout+20*time.Second)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = p.Dir
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start sipp: %v", err)
	}
	go func() {
		p.err = cmd.Wait()
		cancel()
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	// SIPp listens once the port is taken. Another process binding a port signals nothing, so try to
	// bind it every 10 ms; SIPp exiting ends the wait at once.
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for PortFree(p.Port) {
		select {
		case <-tick.C:
		case <-p.done:
			t.Fatalf("sipp exited before it bound 127.0.0.1:%d: %v\n%s", p.Port, p.err, p.out.String())
		case <-deadline.C:
			t.Fatalf("sipp did not bind 127.0.0.1:%d within 10s", p.Port)
		}
	}
	return p
}

// Wait fails the test unless SIPp finishes its scenario (exit 0) within its timeout and 5 s.
func (p *Peer) Wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(p.timeout + 5*time.Second):
		t.Fatal("sipp did not finish")
	}
	if p.err != nil {
		var ee *exec.ExitError
		code := -1
		if errors.As(p.err, &ee) {
			code = ee.ExitCode()
		}
		errs, _ := os.ReadFile(filepath.Join(p.Dir, "errors.log"))
		t.Fatalf("sipp scenario failed (exit %d): %v\n%s\n%s", code, p.err, Tail(p.out.String(), 3000), Tail(string(errs), 3000))
	}
}

// request is one request SIPp received, from its message trace.
type request struct {
	at     time.Time
	method string
	user   string // the Request-URI's user part
}

// received reads SIPp's message trace (Start with TraceMessages), whose entries begin
// "-----… 2026-12-06 15:51:08.314953" in local time, then say whether the message was received or sent.
func (p *Peer) received(t *testing.T) ([]request, string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.Dir, "messages.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []request
	var at time.Time
	incoming := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "-----"):
			if f := strings.Fields(strings.TrimLeft(line, "- ")); len(f) >= 2 {
				at, _ = time.ParseInLocation("2006-01-02 15:04:05.000000", f[0]+" "+f[1], time.Local)
			}
		case strings.Contains(line, "message received"):
			incoming = true
		case strings.Contains(line, "message sent"):
			incoming = false
		case incoming && strings.Contains(line, " sip:") && strings.HasSuffix(strings.TrimSpace(line), "SIP/2.0"):
			method, uri, _ := strings.Cut(line, " sip:")
			user, _, _ := strings.Cut(uri, "@")
			out = append(out, request{at: at, method: method, user: user})
			incoming = false
		}
	}
	return out, string(b)
}

// Received returns when SIPp received the first request of method. Call it after Wait.
func (p *Peer) Received(t *testing.T, method string) time.Time {
	t.Helper()
	reqs, trace := p.received(t)
	for _, r := range reqs {
		if r.method == method {
			return r.at
		}
	}
	t.Fatalf("sipp received no %s:\n%s", method, Tail(trace, 3000))
	return time.Time{}
}

// Requests returns the Request-URI user part of every request of method SIPp received, in order.
// Call it after Wait.
func (p *Peer) Requests(t *testing.T, method string) []string {
	t.Helper()
	reqs, _ := p.received(t)
	var users []string
	for _, r := range reqs {
		if r.method == method {
			users = append(users, r.user)
		}
	}
	return users
}

// Tail returns the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
