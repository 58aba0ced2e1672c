package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/loadtest"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/store/redis/redistest"
)

// Two `ivr serve` processes on one Redis, one phone as their shared trunk,
// and one of them killed with SIGKILL in the middle of the run.
//
// The processes are this test binary re-executed as `ivr serve` (see
// TestClusterServeProcess): a real process, so SIGKILL leaves exactly what a
// crash leaves (jobs pending in the stream, calls claimed in Redis, a phone
// call with nobody at the other end), without a separate go build.

// serveArgsEnv carries the arguments of `ivr serve` to the re-executed binary,
// separated by \x1f.
const serveArgsEnv = "IVR_TEST_SERVE_ARGS"

// TestClusterServeProcess is not a test: it is `ivr serve` when this binary
// is started by TestClusterNodeKilled, and skips otherwise.
func TestClusterServeProcess(t *testing.T) {
	args := os.Getenv(serveArgsEnv)
	if args == "" {
		t.Skip("the ivr serve process of TestClusterNodeKilled")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, append([]string{"serve"}, strings.Split(args, "\x1f")...), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// serveProcess is one `ivr serve` child process.
type serveProcess struct {
	name      string
	cmd       *exec.Cmd
	api       *apiClient
	exited    chan struct{}
	reclaimed atomic.Int64 // "streams: job reclaimed" log lines
}

// startServeProcess starts `ivr serve` with args (plus JSON logs) and waits
// until it serves. Its log goes to dir/name.log.
func startServeProcess(t *testing.T, dir, name string, args []string) *serveProcess {
	t.Helper()
	args = append(args, "--log.format", "json", "--log.level", "info")
	cmd := exec.Command(os.Args[0], "-test.run=^TestClusterServeProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), serveArgsEnv+"="+strings.Join(args, "\x1f"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{name: name, cmd: cmd, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer logf.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			logf.Write(append(line, '\n'))
			var rec struct {
				Msg string `json:"msg"`
				API string `json:"api"`
			}
			if json.Unmarshal(line, &rec) != nil {
				continue
			}
			switch rec.Msg {
			case "serving":
				addr <- rec.API
			case "streams: job reclaimed":
				p.reclaimed.Add(1)
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case a := <-addr:
		p.api = &apiClient{base: "http://" + a, key: "cluster-key", http: &http.Client{Timeout: 10 * time.Second}}
	case <-p.exited:
		t.Fatalf("%s exited at start; see %s", name, logf.Name())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not serve within 30s", name)
	}
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *serveProcess) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// stop sends SIGTERM, and SIGKILL if the process has not exited 20s later.
func (p *serveProcess) stop(t *testing.T) {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not stop within 20s of SIGTERM", p.name)
		p.kill()
	}
}

// phoneLog counts the calls the phone got per number and keeps the codes heard.
type phoneLog struct {
	mu      sync.Mutex // guards the fields below
	calls   map[string]int
	heard   map[string]string
	up      int // calls started and not yet ended
	ended   int
	talked  time.Duration // total time answered, over the calls that heard a code
	changed chan struct{} // closed and replaced when a call starts or ends
}

func newPhoneLog() *phoneLog {
	return &phoneLog{calls: map[string]int{}, heard: map[string]string{}, changed: make(chan struct{})}
}

// planFor is the phone's PlanFor: it counts the call up and answers it.
func (l *phoneLog) planFor(string) loadtest.Plan {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.up++
	l.signal()
	return loadtest.Plan{Behaviour: loadtest.Answer}
}

func (l *phoneLog) report(r loadtest.CallReport) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls[r.Number]++
	if r.HeardCode != "" {
		l.heard[r.Number] = r.HeardCode
		l.talked += r.EndedAt.Sub(r.AnsweredAt)
	}
	l.up--
	l.ended++
	l.signal()
}

// signal wakes the waiters of await; l.mu must be held.
func (l *phoneLog) signal() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// await waits until cond holds of the calls the phone has up and has ended,
// trying it again each time a call starts or ends, and fails the test if it
// does not hold within the given time; what says what it waits for.
func (l *phoneLog) await(t *testing.T, within time.Duration, what string, cond func(up, ended int) bool) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		up, ended, changed := l.up, l.ended, l.changed
		l.mu.Unlock()
		if cond(up, ended) {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("waiting for %s: not within %v; the phone has %d calls up, %d ended", what, within, up, ended)
		}
	}
}

func (l *phoneLog) snapshot() (calls map[string]int, heard map[string]string, ended int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	calls, heard = map[string]int{}, map[string]string{}
	for k, v := range l.calls {
		calls[k] = v
	}
	for k, v := range l.heard {
		heard[k] = v
	}
	return calls, heard, l.ended
}

// The sizes of TestClusterNodeKilled are in cluster_race_test.go and
// cluster_norace_test.go: the race detector makes every call (and the phone
// that recognises the speech) several times more expensive.

// Two nodes share the work; one is killed with SIGKILL while it has calls in
// progress and jobs in hand. Every verification still ends in a terminal
// status; no number is called twice; the calls the dead node had claimed
// are never dialled again (the survivor waits them out and records them
// node_lost); and everything the dead node had not dialled is dialled by the
// survivor.
func TestClusterNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("two server processes and a phone farm for about two minutes")
	}
	dir := t.TempDir()
	rs := redistest.New(t)
	cat, err := e2eCatalog()
	if err != nil {
		t.Fatal(err)
	}
	log := newPhoneLog()
	// A call whose server died gets no BYE: the phone hangs up by itself after this.
	const phoneMaxCall = 25 * time.Second
	phone, err := loadtest.NewPhone(loadtest.Config{
		ListenAddr: "127.0.0.1:0", Catalog: cat, NoAudio: true, PlanFor: log.planFor, OnReport: log.report,
		MaxCallDuration: phoneMaxCall,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()

	common := []string{
		"--listen", "127.0.0.1:0", "--sip.listen", "127.0.0.1:0",
		"--trunk", "sip:" + phone.Addr().String(), "--api_keys", "cluster-key",
		"--redis.url", clusterRedisURL(rs), "--redis.lease", "3s", "--policy.allow_prefixes", "+1555",
		"--call.tries", "1", "--call.key_timeout", "4s", "--call.ring_timeout", "3s",
		"--call.max_duration", "20s", "--call.repeat_wait", "200ms", "--call.max_repeats", "0",
		"--call.rtp_timeout", "0",
		"--otp.ttl", clusterTTL.String(),
		"--dispatch.max_concurrent", fmt.Sprint(clusterConcurrent), "--dispatch.cps", fmt.Sprint(clusterCPS),
		"--dispatch.drain_timeout", "5s",
		"--limits.sends_per_number", "0",
	}
	nodes := []*serveProcess{
		startServeProcess(t, dir, "node-a", append(common, "--redis.node", "node-a", "--media.ports", "30000-34999")),
		startServeProcess(t, dir, "node-b", append(common, "--redis.node", "node-b", "--media.ports", "35000-39999")),
	}
	dead, survivor := nodes[0], nodes[1]

	// Start every verification, spread over both nodes.
	began := time.Now()
	type started struct{ id, number string }
	all := make([]started, clusterVerifications)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range all {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			number := fmt.Sprintf("+1555300%04d", i)
			var v verification
			status, err := nodes[i%2].api.do(context.Background(), "POST", "/v1/verifications", map[string]any{"to": number}, &v)
			if status != http.StatusCreated {
				t.Errorf("start %d on %s: %d %v", i, nodes[i%2].name, status, err)
				return
			}
			all[i] = started{v.ID, number}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d verifications started in %v", len(all), time.Since(began).Round(time.Millisecond))

	// Kill one node in the middle of the run: once the phone has reported a
	// quarter of the calls ended.
	log.await(t, clusterTTL-time.Since(began), "a quarter of the calls to end", func(_, ended int) bool { return ended >= len(all)/4 })
	killedAt := time.Now()
	dead.kill()
	_, _, endedAtKill := log.snapshot()
	t.Logf("%s killed with SIGKILL %v in, after %d calls ended", dead.name, killedAt.Sub(began).Round(time.Millisecond), endedAtKill)

	// Act as the backend: check each code the phone heard, on the survivor,
	// until every verification is terminal (approved; expired at otp.ttl for
	// those whose call died with the node before the code was spoken).
	// This polls once a second: nothing signals a verification turning terminal
	// on the server (expired at otp.ttl; node_lost once the survivor has waited
	// out the dead node's claim), and a pass reads every verification not yet
	// terminal, so a faster one would load the two cores the nodes run on.
	final := map[string]verification{}
	deadline := began.Add(clusterTTL + 40*time.Second)
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for len(final) < len(all) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d verifications not terminal %v after the start", len(all)-len(final), len(all), time.Since(began).Round(time.Second))
		}
		_, heard, _ := log.snapshot()
		for _, s := range all {
			if _, ok := final[s.id]; ok {
				continue
			}
			if code := heard[s.number]; code != "" {
				survivor.api.do(context.Background(), "POST", "/v1/verifications/"+s.id+"/check", map[string]string{"code": code}, nil)
			}
			var v verification
			if status, err := survivor.api.do(context.Background(), "GET", "/v1/verifications/"+s.id, nil, &v); status != 200 {
				t.Fatalf("GET %s on the survivor: %d %v", s.id, status, err)
			}
			if otp.Status(v.Status).Terminal() && len(v.Calls) == 1 && v.Calls[0].Status.Terminal() {
				final[s.id] = v
			}
		}
		if len(final) < len(all) {
			<-poll.C
		}
	}
	// Wait for the phone's last calls (those the dead node left open, which
	// the phone ends itself after phoneMaxCall) to end, then count: a call
	// still up would be missing from the calls per number.
	log.await(t, phoneMaxCall+5*time.Second, "every call the phone took to end", func(up, _ int) bool { return up == 0 })
	calls, heard, _ := log.snapshot()

	var approved, expired, lost, deadDelivered, byDead, bySurvivor, afterKill int
	for _, s := range all {
		v := final[s.id]
		c := v.Calls[0]
		if n := calls[s.number]; n > 1 {
			t.Errorf("%s (%s) was called %d times", s.number, s.id, n)
		}
		switch v.Status {
		case string(otp.StatusApproved):
			approved++
		case string(otp.StatusExpired):
			expired++
		default:
			t.Errorf("%s ended %s", s.id, v.Status)
		}
		switch c.Node {
		case dead.name:
			byDead++
			if c.ClaimedAt != nil && c.ClaimedAt.After(killedAt) {
				t.Errorf("%s: claimed by %s after it was killed", s.id, dead.name)
			}
			switch {
			case c.Status == otp.CallFailed && c.HangupCause == "node_lost":
				lost++
			case c.Status == otp.CallDelivered:
				deadDelivered++
			default:
				t.Errorf("%s: the dead node's call ended %s (%s), want delivered or failed node_lost", s.id, c.Status, c.HangupCause)
			}
		case survivor.name:
			bySurvivor++
			if c.ClaimedAt != nil && c.ClaimedAt.After(killedAt) {
				afterKill++
			}
			// What the dead node had not dialled, the survivor dialled: once, heard and approved.
			if c.Status != otp.CallDelivered || calls[s.number] != 1 || v.Status != string(otp.StatusApproved) {
				t.Errorf("%s: dialled by the survivor: call %s (%s), %d phone calls, verification %s; want delivered, 1, approved",
					s.id, c.Status, c.HangupCause, calls[s.number], v.Status)
			}
		default:
			t.Errorf("%s: call %s never claimed by a node (%s)", s.id, c.Status, c.HangupCause)
		}
		if v.Status == string(otp.StatusExpired) && heard[s.number] != "" {
			t.Errorf("%s: the phone heard the code but the verification expired", s.id)
		}
	}
	log.mu.Lock()
	if n := len(log.heard); n > 0 {
		t.Logf("a delivered call lasted %v on average", (log.talked / time.Duration(n)).Round(10*time.Millisecond))
	}
	log.mu.Unlock()
	t.Logf("%d verifications in %v: %d approved, %d expired; the dead node claimed %d (%d delivered, %d lost with it), "+
		"the survivor %d (%d after the kill, %d jobs reclaimed from the dead node's lease)",
		len(all), time.Since(began).Round(time.Second), approved, expired, byDead, deadDelivered, lost,
		bySurvivor, afterKill, survivor.reclaimed.Load())
	if lost == 0 {
		t.Error("the dead node had no call in progress when it was killed: the test proved nothing about reclaiming")
	}
	if afterKill == 0 {
		t.Error("the survivor dialled nothing after the kill")
	}
	if survivor.reclaimed.Load() == 0 {
		t.Error("the survivor reclaimed no job from the dead node")
	}
}
