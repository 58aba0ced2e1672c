package loadtest_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/loadtest"
	"github.com/voiceotp/voiceotp/media"
)

// A phone that talks the whole call (a prompt recording, looped) still passes the gate and hears its
// code: the server's in-band DTMF detector (dtmf_mode any) hears the speech and must take none of it
// for a key, and the phone's recogniser listens only to the server.
func TestEndToEndPhoneAudio(t *testing.T) {
	cat, err := e2eCatalog()
	if err != nil {
		t.Fatal(err)
	}
	// Everything the server says, as one recording: digits, "press", "again" and the rest, spoken by
	// the phone back to the server.
	var all []int16
	for _, id := range cat.IDs() {
		all = append(all, cat.PCM(id)...)
	}
	var b bytes.Buffer
	if err := loadtest.WriteWAV(&b, all); err != nil {
		t.Fatal(err)
	}
	everything := filepath.Join(t.TempDir(), "everything.wav")
	if err := os.WriteFile(everything, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		file   string
		codecs []media.Codec
		calls  int
	}{
		{"hello.wav, PCMU", "../prompts/en/hello.wav", nil, 6},
		{"every prompt, PCMA", everything, []media.Codec{media.PCMA}, 6},
	}
	for ti, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			audio, err := loadtest.LoadPhoneAudio(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			cfg := serverConfig()
			cfg.DTMFMode = "any" // RFC 4733, INFO and in-band on every call: the detector hears the phone's speech
			phone, runner, trunk := newCallPair(t, loadtest.Config{Catalog: cat, Codecs: tt.codecs, Audio: audio}, cfg)
			// The calls run at once, like a farm's (parallel subtests would queue behind GOMAXPROCS).
			var wg sync.WaitGroup
			for i := range tt.calls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					number := fmt.Sprintf("+1555100%02d%02d", ti, i)
					code := randomCode(6)
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					res := runner.Run(ctx, callflow.Request{Trunk: trunk, Number: number, Code: code}, nil)
					rep, err := phone.WaitReport(ctx, number)
					if err != nil {
						t.Errorf("call %d: %v", i, err)
						return
					}
					if res.Outcome != callflow.Delivered || rep.HeardCode != code || !rep.Pressed || rep.Err != nil {
						t.Errorf("call %d: outcome %s heard %q: %s\nphone: %s", i, res.Outcome, rep.HeardCode, res, summary(rep))
						return
					}
					for _, e := range res.Events {
						if e.Type == callflow.EventDigit && (e.Source != media.SourceRFC4733 || e.Accepted == nil || !*e.Accepted) {
							t.Errorf("call %d: the server took a key from %s (accepted %v): %+v", i, e.Source, e.Accepted, e)
						}
					}
					// Every packet the phone sent was the recording or its key press: no silence.
					if s := rep.Sent; s.FramesPlayed == 0 || s.FramesPlayed+s.EventPackets != s.Packets {
						t.Errorf("call %d: phone sent %+v, want only the recording and the key press", i, s)
					}
					if res.Media.PacketsRecv < rep.Sent.Packets/2 {
						t.Errorf("call %d: the server received %d of the phone's %d packets", i, res.Media.PacketsRecv, rep.Sent.Packets)
					}
				}()
			}
			wg.Wait()
		})
	}
}
