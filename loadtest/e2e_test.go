package loadtest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/loadtest"
	"github.com/voiceotp/voiceotp/media"
	"github.com/voiceotp/voiceotp/prompts"
	"github.com/voiceotp/voiceotp/sip"
)

// The end-to-end tests run the real call script (callflow.Runner on a sip.UA) against a virtual phone
// on 127.0.0.1, the phone's address as the trunk: everything but the HTTP API.

var e2eCatalog = sync.OnceValues(func() (*prompts.Catalog, error) { return prompts.Load("en") })

// serverConfig keeps each call to a few seconds, like callflow's SIPp tests.
func serverConfig() callflow.Config {
	return callflow.Config{
		Tries:           2,
		KeyTimeout:      2 * time.Second,
		RingTimeout:     5 * time.Second,
		MaxCallDuration: 40 * time.Second,
		RepeatWait:      500 * time.Millisecond,
		MaxRepeats:      1,
		RTPTimeout:      3 * time.Second, // the phone sends silence, so the server can watch for it
		MediaIP:         netip.MustParseAddr("127.0.0.1"),
		Ports:           media.PortRange{Min: 20000, Max: 29999},
	}
}

// newCallPair starts a virtual phone with pc (on 127.0.0.1, RTP in 30000-39999) and the call script
// with sc on a SIP UA of its own, the phone as its trunk. The test's cleanup closes both.
func newCallPair(t *testing.T, pc loadtest.Config, sc callflow.Config) (*loadtest.Phone, *callflow.Runner, sip.Trunk) {
	t.Helper()
	pc.MediaIP = netip.MustParseAddr("127.0.0.1")
	pc.Ports = media.PortRange{Min: 30000, Max: 39999}
	phone, err := loadtest.NewPhone(pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { phone.Close() })
	ua, err := sip.NewUA(sip.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	runner, err := callflow.New(ua, pc.Catalog, sc)
	if err != nil {
		t.Fatal(err)
	}
	trunk, err := sip.ParseTrunk("sip:" + phone.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return phone, runner, trunk
}

func randomCode(n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(byte('0' + rand.IntN(10)))
	}
	return b.String()
}

func TestEndToEnd(t *testing.T) {
	cat, err := e2eCatalog()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		plan    loadtest.Plan
		codecs  []media.Codec
		noAudio bool
		ring    time.Duration
		want    callflow.Outcome
		check   func(t *testing.T, res *callflow.Result, rep loadtest.CallReport, code string)
	}{
		{
			name: "answer", plan: loadtest.Plan{Behaviour: loadtest.Answer}, want: callflow.Delivered,
			check: func(t *testing.T, res *callflow.Result, rep loadtest.CallReport, code string) {
				if rep.HeardCode != code || len(rep.Plays) != 2 || !rep.Pressed || rep.HangupBy != "remote" || rep.Err != nil {
					t.Errorf("heard %q plays %d pressed %v hangup %q err %v", rep.HeardCode, len(rep.Plays), rep.Pressed, rep.HangupBy, rep.Err)
				}
				if rep.Codec != "PCMU" || res.Media.Codec != "PCMU" {
					t.Errorf("codec %s / %s", rep.Codec, res.Media.Codec)
				}
				if len(rep.PCM) < 8000*5 {
					t.Errorf("recording of %d samples", len(rep.PCM))
				}
				if rep.Received.Packets == 0 || rep.Sent.Packets == 0 || res.Media.PacketsRecv < rep.Sent.Packets/2 {
					t.Errorf("rtp: phone received %d sent %d; server received %d", rep.Received.Packets, rep.Sent.Packets, res.Media.PacketsRecv)
				}
				for _, ts := range []time.Time{rep.AnsweredAt, rep.ChallengeAt, rep.PressedAt, rep.CodeHeardAt, rep.EndedAt} {
					if ts.IsZero() {
						t.Fatalf("a timestamp is missing: %+v", rep)
					}
				}
				if !(rep.AnsweredAt.Before(rep.ChallengeAt) && !rep.PressedAt.Before(rep.ChallengeAt) &&
					rep.PressedAt.Before(rep.CodeHeardAt) && !rep.EndedAt.Before(rep.CodeHeardAt)) {
					t.Errorf("timestamps out of order: %+v", rep)
				}
			},
		},
		{
			name: "answer A-law after a delay, slow to press", plan: loadtest.Plan{AnswerDelay: 300 * time.Millisecond, PressDelay: 400 * time.Millisecond},
			codecs: []media.Codec{media.PCMA}, noAudio: true, want: callflow.Delivered,
			check: func(t *testing.T, res *callflow.Result, rep loadtest.CallReport, code string) {
				if rep.HeardCode != code || rep.Codec != "PCMA" || res.Media.Codec != "PCMA" || rep.Sent.Packets != rep.Sent.EventPackets {
					t.Errorf("heard %q codec %s/%s sent %+v", rep.HeardCode, rep.Codec, res.Media.Codec, rep.Sent)
				}
				if d := res.AnsweredAt.Sub(res.RingingAt); d < 250*time.Millisecond {
					t.Errorf("answered %s after ringing, want the 300 ms delay", d)
				}
			},
		},
		{
			name: "nokey", plan: loadtest.Plan{Behaviour: loadtest.NoKey}, want: callflow.NoInput,
			check: func(t *testing.T, res *callflow.Result, rep loadtest.CallReport, code string) {
				if rep.Pressed || rep.HeardCode != "" || len(rep.Plays) != 0 || rep.HangupBy != "remote" {
					t.Errorf("pressed %v heard %q plays %v hangup %q", rep.Pressed, rep.HeardCode, rep.Plays, rep.HangupBy)
				}
				for _, tok := range rep.Heard {
					if tok.ID == prompts.CodeIs || tok.ID == prompts.Again {
						t.Errorf("heard %s without pressing", tok.ID)
					}
				}
			},
		},
		{
			name: "busy", plan: loadtest.Plan{Behaviour: loadtest.Busy, AnswerDelay: 100 * time.Millisecond}, want: callflow.Busy,
			check: func(t *testing.T, res *callflow.Result, rep loadtest.CallReport, code string) {
				if rep.SIPStatus != 486 || res.SIPStatus != 486 || !rep.AnsweredAt.IsZero() {
					t.Errorf("phone %d server %d answered %v", rep.SIPStatus, res.SIPStatus, rep.AnsweredAt)
				}
			},
		},
		{
			name: "noanswer", plan: loadtest.Plan{Behaviour: loadtest.NoAnswer}, ring: time.Second, want: callflow.NoAnswer,
			check: func(t *testing.T, res *callflow.Result, rep loadtest.CallReport, code string) {
				if rep.SIPStatus != 487 || res.SIPStatus != 487 || res.HangupCause != callflow.CauseRingTimeout {
					t.Errorf("phone %d server %d cause %s", rep.SIPStatus, res.SIPStatus, res.HangupCause)
				}
			},
		},
		{
			name: "hangup during the code", plan: loadtest.Plan{Behaviour: loadtest.Hangup}, want: callflow.Abandoned,
			check: func(t *testing.T, res *callflow.Result, rep loadtest.CallReport, code string) {
				if !rep.Pressed || rep.HangupBy != "local" || rep.HeardCode != "" || res.HangupBy != callflow.ByRemote || !res.ChallengeDigitOK {
					t.Errorf("pressed %v hangup %q heard %q; server hangup %s gate %v", rep.Pressed, rep.HangupBy, rep.HeardCode, res.HangupBy, res.ChallengeDigitOK)
				}
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := serverConfig()
			if tt.ring > 0 {
				cfg.RingTimeout = tt.ring
			}
			if tt.noAudio {
				cfg.RTPTimeout = -1 // a phone that sends nothing would trip it
			}
			phone, runner, trunk := newCallPair(t, loadtest.Config{
				Catalog:   cat,
				Plan:      tt.plan,
				Codecs:    tt.codecs,
				NoAudio:   tt.noAudio,
				KeepAudio: true,
			}, cfg)
			number := fmt.Sprintf("+1555000%04d", i)
			code := randomCode(6)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res := runner.Run(ctx, callflow.Request{Trunk: trunk, Number: number, Code: code}, nil)
			rep, err := phone.WaitReport(ctx, number)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != tt.want {
				t.Fatalf("outcome %s, want %s: %s %+v\nphone: %+v", res.Outcome, tt.want, res, res.Media, summary(rep))
			}
			if rep.CallID != res.CallID && res.CallID != "" {
				t.Errorf("call id %q, server %q", rep.CallID, res.CallID)
			}
			if rep.Number != number || rep.Behaviour != tt.plan.Behaviour && tt.plan.Behaviour != "" {
				t.Errorf("report number %q behaviour %q", rep.Number, rep.Behaviour)
			}
			if res.ChallengeDigit != "" && tt.want != callflow.Busy && tt.want != callflow.NoAnswer && rep.ChallengeDigit != res.ChallengeDigit {
				t.Errorf("challenge %q recognised as %q", res.ChallengeDigit, rep.ChallengeDigit)
			}
			tt.check(t, res, rep, code)
		})
	}
}

func summary(r loadtest.CallReport) string {
	var ids []string
	for _, t := range r.Heard {
		ids = append(ids, string(t.ID))
	}
	return fmt.Sprintf("status %d hangup %q challenge %q pressed %v plays %v heard [%s] err %v sent %+v received %+v",
		r.SIPStatus, r.HangupBy, r.ChallengeDigit, r.Pressed, len(r.Plays), strings.Join(ids, " "), r.Err, r.Sent, r.Received)
}
