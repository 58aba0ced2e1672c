package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/media"
	"github.com/voiceotp/voiceotp/prompts"
	"github.com/voiceotp/voiceotp/sip"
)

// cmdCall places one call and prints its timeline. It exits 0 only when
// the outcome is delivered, 1 for any other outcome, 2 for bad usage.
func cmdCall(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, err := parseCallFlags(args, stderr)
	if err != nil {
		return parseExit(err)
	}
	cfg, req, err := f.callflowConfig()
	if err != nil {
		fmt.Fprintf(stderr, "ivr call: %v\n", err)
		return 2
	}
	logger := verboseLogger(stderr, f.verbose)

	catalog, err := prompts.Load("en")
	if err != nil {
		fmt.Fprintf(stderr, "ivr call: %v\n", err)
		return 1
	}
	ua, err := sip.NewUA(f.sipConfig(logger))
	if err != nil {
		fmt.Fprintf(stderr, "ivr call: %v\n", err)
		return 1
	}
	defer ua.Close()
	runner, err := callflow.New(ua, catalog, cfg, callflow.WithLogger(logger))
	if err != nil {
		fmt.Fprintf(stderr, "ivr call: %v\n", err)
		return 2
	}
	return f.place(ctx, runner, req, ua.LocalAddr(), stdout, stderr)
}

// callFlags is the command line of ivr call.
type callFlags struct {
	trunk, code, challenge    string
	asJSON                    bool
	listen, mediaIP, rtpPorts string
	from, username            string
	ringTimeout, keyTimeout   time.Duration
	tries                     int
	repeatWait                time.Duration
	maxRepeats                int
	maxDuration, rtpTimeout   time.Duration
	verbose                   bool
	args                      []string // the number to call
}

// parseCallFlags parses ivr call's command line; the error is flag.ErrHelp after --help.
func parseCallFlags(args []string, stderr io.Writer) (*callFlags, error) {
	fs := flag.NewFlagSet("ivr call", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f callFlags
	fs.StringVar(&f.trunk, "trunk", "", "SIP trunk to send the INVITE to, e.g. sip:127.0.0.1:5080 (required)")
	fs.StringVar(&f.code, "code", "", "the code to read, 4-10 digits (required; never printed)")
	fs.StringVar(&f.challenge, "challenge", "random", "the gate: random, any, or one digit 0-9")
	fs.BoolVar(&f.asJSON, "json", false, "print the result as JSON instead of a ladder")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "SIP listening address, also the source of our requests")
	fs.StringVar(&f.mediaIP, "media-ip", "", "IP announced in SDP and bound for RTP (default: the SIP listening IP)")
	fs.StringVar(&f.rtpPorts, "rtp-ports", "10000-20000", "RTP port range min-max")
	fs.StringVar(&f.from, "from", "voiceotp", "caller ID user part of From")
	fs.StringVar(&f.username, "username", "", "digest auth username (password from $IVR_SIP_PASSWORD)")
	fs.DurationVar(&f.ringTimeout, "ring-timeout", 45*time.Second, "CANCEL the call if not answered within this time")
	fs.DurationVar(&f.keyTimeout, "key-timeout", 5*time.Second, "wait this long for the key after the challenge")
	fs.IntVar(&f.tries, "tries", 3, "how many times the challenge is played")
	fs.DurationVar(&f.repeatWait, "repeat-wait", 4*time.Second, "wait this long for 1 after offering a repeat")
	fs.IntVar(&f.maxRepeats, "max-repeats", 2, "how many extra plays the callee may ask for (0: none)")
	fs.DurationVar(&f.maxDuration, "max-duration", 2*time.Minute, "maximum talk time")
	fs.DurationVar(&f.rtpTimeout, "rtp-timeout", 30*time.Second, "hang up after this long without RTP from the callee (0: never)")
	fs.BoolVar(&f.verbose, "verbose", false, "log SIP and call details to stderr")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: ivr call --trunk sip:HOST:PORT --code DIGITS [flags] +E164NUMBER\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	f.args = fs.Args()
	return &f, nil
}

// callflowConfig turns the flags into the call script's Config and the call to place.
func (f *callFlags) callflowConfig() (callflow.Config, callflow.Request, error) {
	cfg, req, err := callSetup(f.args, f.trunk, f.code, f.challenge, f.rtpPorts, f.mediaIP)
	if err != nil {
		return cfg, req, err
	}
	cfg.Tries = f.tries
	cfg.KeyTimeout = f.keyTimeout
	cfg.RingTimeout = f.ringTimeout
	cfg.RepeatWait = f.repeatWait
	cfg.MaxRepeats = f.maxRepeats
	if f.maxRepeats == 0 {
		cfg.MaxRepeats = -1
	}
	cfg.MaxCallDuration = f.maxDuration
	cfg.RTPTimeout = f.rtpTimeout
	if f.rtpTimeout == 0 {
		cfg.RTPTimeout = -1
	}
	return cfg, req, nil
}

// sipConfig is the user agent's Config: the flags, and the password from $IVR_SIP_PASSWORD.
func (f *callFlags) sipConfig(logger *slog.Logger) sip.Config {
	return sip.Config{
		ListenAddr: f.listen,
		FromUser:   f.from,
		Username:   f.username,
		Password:   os.Getenv("IVR_SIP_PASSWORD"),
		Logger:     logger,
	}
}

// place runs the call, printing it as a ladder or its result as JSON, and returns the exit code.
func (f *callFlags) place(ctx context.Context, runner *callflow.Runner, req callflow.Request, from netip.AddrPort, stdout, stderr io.Writer) int {
	var onEvent func(callflow.Event)
	var lad *ladder
	if !f.asJSON {
		lad = &ladder{w: stdout}
		fmt.Fprintf(stdout, "calling %s via %s from %s\n", req.Number, f.trunk, from)
		onEvent = lad.event
	}
	res := runner.Run(ctx, req, onEvent)
	if f.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "ivr call: %v\n", err)
			return 1
		}
	} else {
		lad.summary(res)
	}
	if res.Outcome != callflow.Delivered {
		return 1
	}
	return 0
}

// callSetup validates the command line at the edge: the number must be
// E.164 before it can reach a SIP header.
func callSetup(args []string, trunk, code, challenge, rtpPorts, mediaIP string) (callflow.Config, callflow.Request, error) {
	var cfg callflow.Config
	var req callflow.Request
	if len(args) != 1 {
		return cfg, req, errors.New("give exactly one number to call, in E.164 (e.g. +15551234567)")
	}
	if err := sip.ValidateE164(args[0]); err != nil {
		return cfg, req, err
	}
	req.Number = args[0]
	if trunk == "" {
		return cfg, req, errors.New("--trunk is required (e.g. sip:127.0.0.1:5080)")
	}
	t, err := sip.ParseTrunk(trunk)
	if err != nil {
		return cfg, req, err
	}
	req.Trunk = t
	if code == "" {
		return cfg, req, errors.New("--code is required (4-10 digits)")
	}
	if len(code) < 4 || len(code) > 10 || strings.Trim(code, "0123456789") != "" {
		return cfg, req, errors.New("--code must be 4 to 10 digits")
	}
	req.Code = code
	if cfg.Challenge, err = callflow.ParseChallenge(challenge); err != nil {
		return cfg, req, err
	}
	if cfg.Ports, err = parsePortRange(rtpPorts); err != nil {
		return cfg, req, err
	}
	if mediaIP != "" {
		if cfg.MediaIP, err = netip.ParseAddr(mediaIP); err != nil {
			return cfg, req, fmt.Errorf("--media-ip: %w", err)
		}
	}
	return cfg, req, nil
}

func parsePortRange(s string) (media.PortRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	first, err1 := strconv.Atoi(lo)
	last, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || first < 1024 || last > 65535 || first > last {
		return media.PortRange{}, fmt.Errorf("--rtp-ports must be MIN-MAX within 1024-65535, not %q", s)
	}
	return media.PortRange{Min: first, Max: last}, nil
}

// ladder prints a call's events as they happen, one line each, with the
// time since the INVITE: what a telecom engineer reads first.
type ladder struct {
	w     io.Writer
	start time.Time
}

func (l *ladder) event(e callflow.Event) {
	if l.start.IsZero() {
		l.start = e.At
	}
	t := e.At.Sub(l.start).Seconds()
	var line string
	switch e.Type {
	case callflow.EventDialing:
		line = "→ INVITE"
	case callflow.EventProvisional:
		line = fmt.Sprintf("← %d %s", e.SIPStatus, e.Reason)
	case callflow.EventAnswered:
		line = fmt.Sprintf("← 200 OK, → ACK   media: %s", e.Reason)
	case callflow.EventChallenge:
		ask := "any key"
		if e.Digit != "" {
			ask = e.Digit
		}
		line = fmt.Sprintf("▶ challenge %d: \"to hear your code, press %s\"", e.N, ask)
	case callflow.EventNoKey:
		line = fmt.Sprintf("… no key after challenge %d", e.N)
	case callflow.EventDigit:
		verdict := "rejected"
		if e.Accepted != nil && *e.Accepted {
			verdict = "accepted"
		}
		line = fmt.Sprintf("← DTMF %s %s", e.Digit, verdict)
		if e.Reason != "" {
			line += " (" + e.Reason + ")"
		}
	case callflow.EventGatePassed:
		line = "✓ gate passed: a person is on the line"
	case callflow.EventCodePlayed:
		line = fmt.Sprintf("▶ code played in full (%d)", e.N)
	case callflow.EventRepeatAsked:
		line = fmt.Sprintf("← repeat requested (%d)", e.N)
	case callflow.EventHangup:
		line = fmt.Sprintf("✕ hangup by %s: %s", orDash(e.By), e.Cause)
		if e.SIPStatus != 0 && e.SIPStatus != 200 {
			line += fmt.Sprintf(" (%d %s)", e.SIPStatus, e.Reason)
		}
	default:
		line = string(e.Type)
	}
	fmt.Fprintf(l.w, "%8.3fs  %s\n", t, line)
}

func (l *ladder) summary(r *callflow.Result) {
	fmt.Fprintf(l.w, "\noutcome: %s\n", r.Outcome)
	if r.CallID != "" {
		fmt.Fprintf(l.w, "call-id: %s\n", r.CallID)
	}
	if r.SIPStatus != 0 {
		fmt.Fprintf(l.w, "sip: %d %s\n", r.SIPStatus, r.SIPReason)
	}
	fmt.Fprintf(l.w, "ring: %s  talk: %s  code plays: %d  challenge ok: %v\n",
		r.RingDuration().Round(time.Millisecond), r.TalkDuration().Round(time.Millisecond), r.CodePlays, r.ChallengeDigitOK)
	if m := r.Media; m != nil {
		fmt.Fprintf(l.w, "rtp: %s ↔ %s %s  sent %d pkts (%d late)  received %d pkts, lost %d, jitter %.2f ms, dropped %d\n",
			m.LocalAddr, m.RemoteAddr, m.Codec, m.PacketsSent, m.LatePackets, m.PacketsRecv, m.PacketsLost, m.JitterMS, m.DroppedSource)
	}
	if r.Error != "" {
		fmt.Fprintf(l.w, "error: %s\n", r.Error)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
