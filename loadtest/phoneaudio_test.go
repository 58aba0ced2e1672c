package loadtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/zaf/g711"

	"github.com/voiceotp/voiceotp/media"
	"github.com/voiceotp/voiceotp/prompts"
)

// wavSpec describes a WAV file for makeWAV: the "fmt " fields and the data chunk.
type wavSpec struct {
	code     uint16
	channels uint16
	rate     uint32
	bits     uint16
	data     []byte
	extra    []byte // chunks between "fmt " and "data", e.g. a LIST chunk
}

// makeWAV builds a RIFF/WAVE file byte by byte, so that tests can make the formats LoadPhoneAudio
// refuses.
func makeWAV(s wavSpec) []byte {
	le := binary.LittleEndian
	var fmtBody []byte
	align := s.channels * max(s.bits/8, 1)
	fmtBody = le.AppendUint16(fmtBody, s.code)
	fmtBody = le.AppendUint16(fmtBody, s.channels)
	fmtBody = le.AppendUint32(fmtBody, s.rate)
	fmtBody = le.AppendUint32(fmtBody, s.rate*uint32(align))
	fmtBody = le.AppendUint16(fmtBody, align)
	fmtBody = le.AppendUint16(fmtBody, s.bits)
	if s.code == wavExtensible {
		fmtBody = le.AppendUint16(fmtBody, 22)     // cbSize
		fmtBody = le.AppendUint16(fmtBody, s.bits) // valid bits
		fmtBody = le.AppendUint32(fmtBody, 4)      // channel mask: front centre
		fmtBody = le.AppendUint16(fmtBody, wavPCM) // sub-format GUID, KSDATAFORMAT_SUBTYPE_PCM
		fmtBody = append(fmtBody, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71)
	}
	var body []byte
	body = append(body, "WAVE"...)
	body = append(body, "fmt "...)
	body = le.AppendUint32(body, uint32(len(fmtBody)))
	body = append(body, fmtBody...)
	body = append(body, s.extra...)
	body = append(body, "data"...)
	body = le.AppendUint32(body, uint32(len(s.data)))
	body = append(body, s.data...)
	if len(s.data)%2 == 1 {
		body = append(body, 0)
	}
	out := append([]byte("RIFF"), le.AppendUint32(nil, uint32(len(body)))...)
	return append(out, body...)
}

// ramp is n samples of a sawtooth: every sample differs from its neighbours, so that frames can be told
// apart.
func ramp(n int) []int16 {
	pcm := make([]int16, n)
	for i := range pcm {
		pcm[i] = int16((i%200)*150 - 15000)
	}
	return pcm
}

func pcm16(pcm []int16) []byte {
	var b []byte
	for _, s := range pcm {
		b = binary.LittleEndian.AppendUint16(b, uint16(s))
	}
	return b
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadPhoneAudio(t *testing.T) {
	pcm := ramp(1000) // 6.25 frames: the last padded with silence
	var written bytes.Buffer
	if err := WriteWAV(&written, pcm); err != nil {
		t.Fatal(err)
	}
	ulaw := make([]byte, len(pcm))
	alaw := make([]byte, len(pcm))
	for i, s := range pcm {
		ulaw[i], alaw[i] = g711.EncodeUlawFrame(s), g711.EncodeAlawFrame(s)
	}
	list := append([]byte("LIST\x05\x00\x00\x00INFOx"), 0) // odd size, padded
	good := func(code uint16, bits uint16, data []byte) wavSpec {
		return wavSpec{code: code, channels: 1, rate: 8000, bits: bits, data: data}
	}
	withExtra := good(wavPCM, 16, pcm16(pcm))
	withExtra.extra = list
	tests := []struct {
		name    string
		file    []byte
		wantErr string // "" for a file that loads
		// For files that load: whether the decoded audio is pcm exactly (G.711 files are within
		// their quantisation).
		exact bool
	}{
		{name: "16-bit PCM as WriteWAV writes it", file: written.Bytes(), exact: true},
		{name: "16-bit PCM, extensible header", file: makeWAV(good(wavExtensible, 16, pcm16(pcm))), exact: true},
		{name: "16-bit PCM after a LIST chunk", file: makeWAV(withExtra), exact: true},
		{name: "µ-law", file: makeWAV(good(wavULaw, 8, ulaw))},
		{name: "A-law", file: makeWAV(good(wavALaw, 8, alaw))},
		{name: "wrong rate", file: makeWAV(wavSpec{code: wavPCM, channels: 1, rate: 16000, bits: 16, data: pcm16(pcm)}),
			wantErr: "format is 16000 Hz, mono, 16-bit linear PCM; want 8000 Hz mono: 16-bit linear PCM, or 8-bit µ-law or A-law"},
		{name: "stereo", file: makeWAV(wavSpec{code: wavPCM, channels: 2, rate: 8000, bits: 16, data: pcm16(pcm)}),
			wantErr: "format is 8000 Hz, 2 channels, 16-bit linear PCM; want 8000 Hz mono"},
		{name: "8-bit linear PCM", file: makeWAV(good(wavPCM, 8, ulaw)), wantErr: "8-bit linear PCM; want"},
		{name: "µ-law declared 16-bit", file: makeWAV(good(wavULaw, 16, pcm16(pcm))), wantErr: "16-bit µ-law; want"},
		{name: "float", file: makeWAV(good(wavFloat, 32, make([]byte, 64))), wantErr: "32-bit float; want"},
		{name: "another codec", file: makeWAV(good(0x0011, 4, make([]byte, 64))), wantErr: "4-bit format 0x0011; want"},
		{name: "truncated", file: written.Bytes()[:len(written.Bytes())-100], wantErr: "truncated: the RIFF header says 2044 bytes, the file has 1944"},
		{name: "truncated data chunk", file: func() []byte {
			b := bytes.Clone(written.Bytes()[:len(written.Bytes())-100])
			binary.LittleEndian.PutUint32(b[4:], uint32(len(b)-8))
			return b
		}(), wantErr: `truncated "data" chunk: 2000 bytes declared, 1900 present`},
		{name: "half a sample", file: makeWAV(good(wavPCM, 16, pcm16(pcm)[:101])), wantErr: "not a whole number of 16-bit samples"},
		{name: "no samples", file: makeWAV(good(wavPCM, 16, nil)), wantErr: "no samples"},
		{name: "no fmt chunk", file: []byte("RIFF\x0c\x00\x00\x00WAVEdata\x00\x00\x00\x00"), wantErr: `"data" chunk before "fmt " chunk`},
		{name: "no data chunk", file: func() []byte {
			b := makeWAV(good(wavPCM, 16, nil))[:36]
			binary.LittleEndian.PutUint32(b[4:], 28)
			return b
		}(), wantErr: `no "data" chunk`},
		{name: "not a WAV", file: []byte("ID3\x04\x00\x00\x00\x00\x00\x00 an MP3, say"), wantErr: "not a RIFF/WAVE file"},
		{name: "empty", file: nil, wantErr: "empty file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeTemp(t, "voice.wav", tt.file)
			a, err := LoadPhoneAudio(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrPhoneAudio) {
					t.Fatalf("LoadPhoneAudio = %v, want an ErrPhoneAudio containing %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Name() != "file:voice.wav" || a.Duration() != 125*time.Millisecond {
				t.Errorf("name %q duration %s", a.Name(), a.Duration())
			}
			for _, enc := range []prompts.Encoding{prompts.ULaw, prompts.ALaw} {
				f := a.frames[enc]
				if len(f) != 7 {
					t.Fatalf("%s: %d frames, want 7", enc, len(f))
				}
				for i, fr := range f {
					if len(fr) != media.FrameSize || cap(fr) != media.FrameSize {
						t.Fatalf("%s frame %d: len %d cap %d", enc, i, len(fr), cap(fr))
					}
				}
				if tt.exact {
					want := encodeFrames(pcm, enc)
					for i := range want {
						if !bytes.Equal(f[i], want[i]) {
							t.Fatalf("%s frame %d differs", enc, i)
						}
					}
				}
				// The last frame ends in silence.
				silence := catalog(t).SilenceFrame(enc)
				if tail := f[6][1000-6*160:]; !bytes.Equal(tail, silence[:len(tail)]) {
					t.Errorf("%s: the last frame is not padded with silence: % x", enc, tail[:8])
				}
			}
		})
	}
}

func TestLoadPhoneAudioMissingFile(t *testing.T) {
	_, err := LoadPhoneAudio(filepath.Join(t.TempDir(), "nothing.wav"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrPhoneAudio) {
		t.Errorf("LoadPhoneAudio = %v, want fs.ErrNotExist", err)
	}
}

// A prompt recording is a good phone recording.
func TestLoadPhoneAudioPrompt(t *testing.T) {
	a, err := LoadPhoneAudio("../prompts/en/hello.wav")
	if err != nil {
		t.Fatal(err)
	}
	want := catalog(t).Frames(prompts.ID("hello"), prompts.ALaw)
	got := a.frames[prompts.ALaw]
	if len(got) != len(want) {
		t.Fatalf("%d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d differs from the catalog's", i)
		}
	}
}

func TestPhoneAudioTooLong(t *testing.T) {
	_, err := newPhoneAudio("x", make([]int16, int(MaxPhoneAudio/time.Second)*8000+1))
	if err == nil || !strings.Contains(err.Error(), "at most 10m0s") {
		t.Errorf("newPhoneAudio = %v", err)
	}
}

// loop hands out views of the shared frames: the right frame in each slot, wrapped around, nothing
// copied, capacity capped.
func TestPhoneAudioLoop(t *testing.T) {
	a, err := newPhoneAudio("x", ramp(5*160))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		off, n int
	}{
		{"one frame", 0, 1},
		{"one pass", 0, 5},
		{"from the last frame", 4, 3},
		{"many passes", 2, 23},
		{"shorter again", 3, 4},
		{"longer still", 1, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, enc := range []prompts.Encoding{prompts.ULaw, prompts.ALaw} {
				got := a.loop(enc, tt.off, tt.n)
				if len(got) != tt.n || cap(got) != tt.n {
					t.Fatalf("len %d cap %d, want %d", len(got), cap(got), tt.n)
				}
				for i, f := range got {
					if want := a.frames[enc][(tt.off+i)%5]; &f[0] != &want[0] || len(f) != len(want) {
						t.Fatalf("%s slot %d is not frame %d", enc, i, (tt.off+i)%5)
					}
				}
			}
		})
	}
	// Once the tape is long enough, a call's audio costs no allocation.
	if allocs := testing.AllocsPerRun(100, func() { a.loop(prompts.ULaw, 3, 50) }); allocs != 0 {
		t.Errorf("loop allocates %v times, want 0", allocs)
	}
}

func TestPhoneAudioCallFrames(t *testing.T) {
	a, err := newPhoneAudio("x", ramp(10*160))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		maxCall time.Duration
		want    int
	}{
		{time.Minute, int((time.Minute + loopSlack) / media.FrameDuration)},
		{0, int(loopSlack / media.FrameDuration)},
		{24 * time.Hour, int(maxLoop / media.FrameDuration)},
	}
	for _, tt := range tests {
		if got := len(a.callFrames(prompts.ULaw, tt.maxCall)); got != tt.want {
			t.Errorf("callFrames(%s): %d frames, want %d", tt.maxCall, got, tt.want)
		}
	}
	// Calls start at random frames.
	starts := map[*byte]bool{}
	for range 100 {
		starts[&a.callFrames(prompts.ALaw, time.Minute)[0][0]] = true
	}
	if len(starts) < 5 {
		t.Errorf("100 calls started at %d frames of 10", len(starts))
	}
}

func BenchmarkPhoneAudioCallFrames(b *testing.B) {
	a, err := LoadPhoneAudio("../prompts/en/hello.wav")
	if err != nil {
		b.Fatal(err)
	}
	a.callFrames(prompts.ULaw, DefaultMaxCallDuration)
	b.ReportAllocs()
	for b.Loop() {
		a.callFrames(prompts.ULaw, DefaultMaxCallDuration)
	}
}

// stepClock is a media.Clock that never waits: each SleepUntil moves it to the deadline.
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) SleepUntil(ctx context.Context, t time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	return nil
}

// On the wire, a call's loop is the recording's frames in order from the call's offset, round and round,
// with a key press in the place of some frames, which follow it; silence only once the loop is spent.
func TestPhoneAudioOnTheWire(t *testing.T) {
	a, err := newPhoneAudio("x", ramp(4*160))
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	phone, server := listen(), listen()
	silence := catalog(t).SilenceFrame(prompts.ULaw)
	sender := media.NewSender(phone, server.LocalAddr().(*net.UDPAddr).AddrPort(), media.SenderConfig{
		PayloadType: 0, Silence: silence, DTMFPayloadType: 101, Clock: &stepClock{now: time.Unix(0, 0)},
	})
	const off, n = 2, 11
	loopDone := sender.Play(a.loop(prompts.ULaw, off, n))
	keyDone := sender.PlayDigit('5', 40*time.Millisecond) // 2 slots, then the final packet 3 times

	// The reader counts audio and event packets until silence follows the loop.
	type result struct {
		audio  [][]byte
		events int
		err    error
	}
	got := make(chan result, 1)
	go func() {
		var r result
		buf := make([]byte, 1500)
		var p rtp.Packet
		for {
			if err := server.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
				r.err = err
				break
			}
			k, err := server.Read(buf)
			if err != nil {
				r.err = err
				break
			}
			if err := p.Unmarshal(buf[:k]); err != nil {
				r.err = err
				break
			}
			if p.PayloadType == 101 {
				r.events++
				continue
			}
			if bytes.Equal(p.Payload, silence) {
				break
			}
			r.audio = append(r.audio, bytes.Clone(p.Payload))
		}
		got <- r
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- sender.Run(ctx) }()
	r := <-got
	cancel()
	<-runErr
	<-loopDone
	<-keyDone
	if r.err != nil {
		t.Fatal(r.err)
	}
	if st := sender.Stats(); r.events == 0 || uint64(r.events) != st.EventPackets || st.Digits != 1 {
		t.Errorf("%d event packets received; sent %+v", r.events, st)
	}
	if len(r.audio) != n {
		t.Fatalf("%d audio frames before silence, want %d", len(r.audio), n)
	}
	for i, f := range r.audio {
		if !bytes.Equal(f, a.frames[prompts.ULaw][(off+i)%4]) {
			t.Errorf("frame %d is not the recording's frame %d", i, (off+i)%4)
		}
	}
}

// FuzzReadWAV feeds arbitrary bytes to the WAV reader: it must not panic, and what it accepts has
// samples.
func FuzzReadWAV(f *testing.F) {
	var b bytes.Buffer
	if err := WriteWAV(&b, ramp(300)); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add(makeWAV(wavSpec{code: wavULaw, channels: 1, rate: 8000, bits: 8, data: []byte{1, 2, 3}}))
	f.Add(makeWAV(wavSpec{code: wavExtensible, channels: 1, rate: 8000, bits: 16, data: []byte{1, 2}}))
	f.Add([]byte("RIFF\x04\x00\x00\x00WAVE"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pcm, err := readWAV(data)
		if err == nil && len(pcm) == 0 {
			t.Error("accepted a file without samples")
		}
	})
}

func TestReportPhoneAudio(t *testing.T) {
	a, err := LoadPhoneAudio("../prompts/en/hello.wav")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  DriverConfig
		want string
	}{
		{"default", DriverConfig{}, "silence"},
		{"none", DriverConfig{NoAudio: true}, "none"},
		{"file", DriverConfig{Audio: a}, "file:hello.wav"},
		{"none wins", DriverConfig{NoAudio: true, Audio: a}, "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newReport(tt.cfg, time.Now()).Settings.PhoneAudio; got != tt.want {
				t.Errorf("PhoneAudio %q, want %q", got, tt.want)
			}
		})
	}
}
