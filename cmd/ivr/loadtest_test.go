package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/loadtest"
)

// TestLoadtestCI is the CI load test: a spawned server, the default mix of
// phone behaviours, every call's outcome compared with its behaviour and
// every heard code checked over the API. It asserts outcomes, never speed.
// Under the race detector the run is smaller (ciLoadCalls); scripts/test.sh
// also runs the full 200 calls without it.
// It runs twice: with a socket per call on both sides, and in the dense media mode on both sides,
// where every lane carries many calls from one address and the SSRCs announced in the SDP tell the
// streams apart.
func TestLoadtestCI(t *testing.T) {
	for _, mode := range []string{"socket", "dense"} {
		t.Run(mode, func(t *testing.T) { loadtestCI(t, mode) })
	}
}

func loadtestCI(t *testing.T, mode string) {
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "report.json"), filepath.Join(dir, "report.html")
	var stdout, stderr syncBuf
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{
		"--spawn", "--calls", strconv.Itoa(ciLoadCalls), "--cps", "20",
		"--answer-delay", "100ms-500ms",
		// Short server timeouts keep each call to a few seconds.
		"--ring-timeout", "2s", "--key-timeout", "2s", "--tries", "2", "--repeat-wait", "300ms",
		"--call-timeout", "45s", "--timeout", "80s",
		"--json", jsonPath, "--html", htmlPath,
		"--phone-media", mode, "--server-media", mode,
	}
	code := run(ctx, append([]string{"loadtest"}, args...), &stdout, &stderr)
	t.Logf("stdout:\n%s", stdout.String())
	if code != 0 {
		t.Fatalf("ivr loadtest exited %d\nstderr:\n%s", code, stderr.String())
	}

	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep loadtest.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Settings.PhoneMedia != mode || !strings.Contains(rep.Settings.Target, "media "+mode) {
		t.Errorf("report settings: phone media %q, target %q; want %s", rep.Settings.PhoneMedia, rep.Settings.Target, mode)
	}
	sm := rep.Summary
	if sm.Calls != ciLoadCalls || sm.OK != ciLoadCalls || sm.Errors != 0 {
		t.Errorf("calls %d ok %d errors %d, want %d ok", sm.Calls, sm.OK, sm.Errors, ciLoadCalls)
	}
	// The default mix, dealt evenly: 85 % answer, 5 % nokey, 4 % busy, 3 % noanswer, 3 % hangup.
	want := map[loadtest.Behaviour]string{loadtest.Answer: "delivered", loadtest.NoKey: "no_input",
		loadtest.Busy: "busy", loadtest.NoAnswer: "no_answer", loadtest.Hangup: "abandoned"}
	for b, outcome := range want {
		if n := sm.Outcomes[b][outcome]; n != len(sm.Outcomes[b]) && len(sm.Outcomes[b]) != 1 || n == 0 {
			t.Errorf("%s: outcomes %v, want all %s", b, sm.Outcomes[b], outcome)
		}
	}
	if sm.CodesOK != sm.CodeCalls || sm.CodeCalls != sm.Outcomes[loadtest.Answer]["delivered"] {
		t.Errorf("codes recognised %d of %d", sm.CodesOK, sm.CodeCalls)
	}
	if sm.ChallengeOK != sm.ChallengeCalls || sm.ChallengeCalls == 0 {
		t.Errorf("challenge digits recognised %d of %d", sm.ChallengeOK, sm.ChallengeCalls)
	}
	html, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"echarts.min.js", "Outcomes by behaviour", "API → INVITE", "RTP pacing"} {
		if !strings.Contains(string(html), s) {
			t.Errorf("the HTML report has no %q", s)
		}
	}
}

func TestLoadtestUsage(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A 16 kHz WAV header: the prompts' format but for the rate.
	wide := "RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\x3e\x00\x00\x00\x7d\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"neither spawn nor api", []string{"--calls", "1"}, "--spawn or --api"},
		{"both", []string{"--spawn", "--api", "http://127.0.0.1:1"}, "--spawn or --api"},
		{"calls and duration", []string{"--spawn", "--calls", "1", "--duration", "1s"}, "not both"},
		{"bad mix", []string{"--spawn", "--mix", "answer=85,ring=3"}, "unknown behaviour"},
		{"mix without weight", []string{"--spawn", "--mix", "answer=0"}, "no behaviour"},
		{"bad delay", []string{"--spawn", "--answer-delay", "2s-1s"}, "min ≤ max"},
		{"audio file missing", []string{"--spawn", "--phone-audio", filepath.Join(dir, "music.wav")}, "want silence, none or a WAV file: loadtest: phone audio: open "},
		{"audio not a WAV", []string{"--spawn", "--phone-audio", "file:" + file("song.mp3", "ID3 and more")}, "song.mp3: not a RIFF/WAVE file"},
		{"audio empty", []string{"--spawn", "--phone-audio", file("empty.wav", "")}, "empty.wav: empty file"},
		{"audio wrong format", []string{"--spawn", "--phone-audio", file("wide.wav", wide)}, "format is 16000 Hz, mono, 16-bit linear PCM; want 8000 Hz mono"},
		{"audio without a path", []string{"--spawn", "--phone-audio", "file:"}, "PATH or file:PATH"},
		{"bad cps", []string{"--spawn", "--cps", "0"}, "positive"},
		{"bad phone media", []string{"--spawn", "--phone-media", "shared"}, "--phone-media"},
		{"bad server media", []string{"--spawn", "--server-media", "x"}, "--server-media"},
		{"bad phone listen", []string{"--spawn", "--phone-listen", "localhost"}, "--phone-listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr syncBuf
			if code := cmdLoadtest(context.Background(), tt.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit %d, want 2; stderr %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.want)
			}
		})
	}
}
