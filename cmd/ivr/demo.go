package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/loadtest"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/prompts"
)

// cmdDemo runs the whole product on loopback with nothing installed: the
// server with the memory store, and a virtual phone as its trunk. It asks
// for a verification over HTTP, lets the phone answer, press the asked key
// and hear the code, checks the heard code over HTTP, and exits 0 only when
// the verification is approved.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, err := parseDemoFlags(args, stderr)
	if err != nil {
		return parseExit(err)
	}
	logger := verboseLogger(stderr, f.verbose)
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "ivr demo: "+format+"\n", a...)
		return 1
	}

	phone, err := newDemoPhone(logger, f.wavPath != "")
	if err != nil {
		return fail("%v", err)
	}
	defer phone.Close()

	key := randomKey()
	cfg := demoServeConfig(phone.Addr(), key)
	a, err := newApp(cfg, logger)
	if err != nil {
		return fail("server: %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.run(runCtx) }()
	defer func() { stop(); <-done }()

	base := "http://" + a.apiAddr()
	c := &apiClient{base: base, key: key, http: &http.Client{Timeout: 10 * time.Second}}
	fmt.Fprintf(stdout, "server  %s (API), %s (SIP)\nphone   %s (virtual, on loopback)\n\n", base, a.ua.LocalAddr(), phone.Addr())

	approved, err := demoVerify(ctx, c, phone, f, stdout)
	if err != nil {
		return fail("%v", err)
	}
	if !approved {
		return 1
	}
	return 0
}

// demoFlags is the command line of ivr demo.
type demoFlags struct {
	wavPath, number string
	verbose         bool
}

// parseDemoFlags parses ivr demo's command line; the error is flag.ErrHelp after --help.
func parseDemoFlags(args []string, stderr io.Writer) (*demoFlags, error) {
	fs := flag.NewFlagSet("ivr demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f demoFlags
	fs.StringVar(&f.wavPath, "wav", "demo.wav", "write what the phone heard to this WAV file (empty: don't)")
	fs.StringVar(&f.number, "to", "+15551234567", "the number to verify (the virtual phone answers any)")
	fs.BoolVar(&f.verbose, "verbose", false, "log the server's work to stderr")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return &f, nil
}

// newDemoPhone starts the virtual phone the demo's server calls; the caller must Close it.
func newDemoPhone(logger *slog.Logger, keepAudio bool) (*loadtest.Phone, error) {
	catalog, err := prompts.Load("en")
	if err != nil {
		return nil, err
	}
	phone, err := loadtest.NewPhone(loadtest.Config{
		ListenAddr: "127.0.0.1:0",
		Catalog:    catalog,
		KeepAudio:  keepAudio,
		Logger:     logger,
		// Ring for a moment and take a second to react, like a person.
		PlanFor: func(string) loadtest.Plan {
			return loadtest.Plan{AnswerDelay: 1500 * time.Millisecond, PressDelay: 600 * time.Millisecond}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("virtual phone: %v", err)
	}
	return phone, nil
}

// demoServeConfig is the demo server's config: the defaults on loopback, the phone as its trunk, one API key.
func demoServeConfig(phone netip.AddrPort, key string) serveConfig {
	cfg := defaultServeConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.SIP.Listen = "127.0.0.1:0"
	cfg.Trunk = "sip:" + phone.String()
	cfg.APIKeys = []string{key}
	cfg.Policy.AllowPrefixes = []string{loadtest.NumberPrefix} // the virtual phone's fictional numbers (+1555…)
	cfg.Call.RepeatWait = 2 * time.Second
	return cfg
}

// demoVerify asks for a verification, follows its call, and checks the code the phone heard; true when approved.
func demoVerify(ctx context.Context, c *apiClient, phone *loadtest.Phone, f *demoFlags, stdout io.Writer) (bool, error) {
	var v verification
	status, err := c.do(ctx, "POST", "/v1/verifications", map[string]any{"to": f.number}, &v)
	if err != nil || status != http.StatusCreated {
		return false, fmt.Errorf("POST /v1/verifications: %d %v", status, err)
	}
	fmt.Fprintf(stdout, "POST /v1/verifications → %d %s (%s)\n\n", status, v.ID, v.Status)

	// Follow the call's timeline until it ends.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	call, err := followCall(ctx, c, &v, stdout)
	if err != nil {
		return false, err
	}
	fmt.Fprintf(stdout, "\ncall %s: %s, sip %d, ring %d ms, talk %d ms, challenge ok %v, code played %d×\n",
		call.ID, call.Status, call.SIPStatus, call.RingMS, call.TalkMS, call.ChallengeDigitOK, call.CodePlays)

	rep, err := phone.WaitReport(ctx, f.number)
	if err != nil {
		return false, fmt.Errorf("the phone has no report of the call: %v", err)
	}
	if f.wavPath != "" && len(rep.PCM) > 0 {
		if err := writeWAVFile(f.wavPath, rep.PCM); err != nil {
			return false, fmt.Errorf("%s: %v", f.wavPath, err)
		}
		fmt.Fprintf(stdout, "the phone's recording: %s (%.1f s)\n", f.wavPath, float64(len(rep.PCM))/8000)
	}
	if rep.HeardCode == "" {
		return false, fmt.Errorf("the phone did not hear a code (call %s)", call.Status)
	}
	return checkHeardCode(ctx, c, v.ID, rep.HeardCode, stdout)
}

// followCall polls v until its first call ends, printing each new event of the call's timeline.
func followCall(ctx context.Context, c *apiClient, v *verification, stdout io.Writer) (otp.Call, error) {
	printed := 0
	var call otp.Call
	for {
		if _, err := c.do(ctx, "GET", "/v1/verifications/"+v.ID, nil, v); err != nil {
			return call, fmt.Errorf("GET: %v", err)
		}
		if len(v.Calls) > 0 {
			call = v.Calls[0]
			for ; printed < len(call.Events); printed++ {
				printEvent(stdout, call.Events[0].At, call.Events[printed])
			}
			if call.Status.Terminal() {
				return call, nil
			}
		}
		select {
		case <-ctx.Done():
			return call, errors.New("the call did not end in time")
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// checkHeardCode checks the code the phone heard over the API and prints the verdict; true when approved.
func checkHeardCode(ctx context.Context, c *apiClient, id, code string, stdout io.Writer) (bool, error) {
	var chk struct {
		Status       string `json:"status"`
		AttemptsLeft int    `json:"attempts_left"`
	}
	status, err := c.do(ctx, "POST", "/v1/verifications/"+id+"/check", map[string]string{"code": code}, &chk)
	if err != nil {
		return false, fmt.Errorf("check: %v", err)
	}
	fmt.Fprintf(stdout, "heard %s → %s\n", code, chk.Status)
	return status == http.StatusOK && chk.Status == string(otp.StatusApproved), nil
}

func printEvent(w io.Writer, start time.Time, e otp.Event) {
	ev := callflow.Event{Type: callflow.EventType(e.Type), At: e.At, SIPStatus: e.SIPStatus, Reason: e.Reason,
		N: e.N, Digit: e.Digit, Accepted: e.Accepted, By: e.By, Cause: e.Cause}
	(&ladder{w: w, start: start}).event(ev)
}

func writeWAVFile(path string, pcm []int16) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := loadtest.WriteWAV(f, pcm); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func randomKey() string {
	var b [24]byte
	rand.Read(b[:])
	return "demo_" + hex.EncodeToString(b[:])
}

// verification is the part of the API's verification JSON the demo reads.
type verification struct {
	ID     string     `json:"id"`
	Status string     `json:"status"`
	Calls  []otp.Call `json:"calls"`
}

// apiClient is a minimal client of the server's HTTP API.
type apiClient struct {
	base, key string
	http      *http.Client
}

func (c *apiClient) do(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	res, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return res.StatusCode, err
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return res.StatusCode, fmt.Errorf("%d: %s", res.StatusCode, bytes.TrimSpace(b))
		}
	}
	return res.StatusCode, nil
}
