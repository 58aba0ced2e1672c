// Command diago-ivr is the reference IVR that BENCHMARKS.md measures the
// voice OTP server against: the same call script built the way a developer
// would build it on github.com/emiago/diago (dial, play the same prompts,
// read DTMF, hang up), behind the subset of the server's HTTP API that
// `ivr loadtest` uses, so the same load tester drives both.
//
// It is a separate module so the product never depends on diago. It is a
// benchmark fixture, not a product: verifications live in memory, codes are
// compared plainly, and nothing is persisted.
//
//	go run . --listen 127.0.0.1:18081 --sip 127.0.0.1:15061 --trunk 127.0.0.1:15090
//	ivr loadtest --api http://127.0.0.1:18081 --phone-listen 127.0.0.1:15090 --server-pid <pid> …
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emiago/diago"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/zaf/g711"

	"github.com/voiceotp/voiceotp/prompts"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18081", "HTTP API address")
	sipAddr := flag.String("sip", "127.0.0.1:15061", "SIP UDP address (also the media IP)")
	trunk := flag.String("trunk", "127.0.0.1:15090", "host:port that calls go to")
	ringTimeout := flag.Duration("ring-timeout", 3*time.Second, "CANCEL an unanswered call after this")
	keyTimeout := flag.Duration("key-timeout", 5*time.Second, "wait for the key after the challenge")
	tries := flag.Int("tries", 3, "how many times the challenge is played")
	repeatWait := flag.Duration("repeat-wait", time.Second, "wait after offering to repeat the code")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	if err := run(ctx, log, *listen, *sipAddr, *trunk, script{ring: *ringTimeout, key: *keyTimeout, tries: *tries, repeatWait: *repeatWait}); err != nil {
		fmt.Fprintln(os.Stderr, "diago-ivr:", err)
		os.Exit(1)
	}
}

// script is the call script's settings, the same as the server's call section.
type script struct {
	ring, key, repeatWait time.Duration
	tries                 int
}

func run(ctx context.Context, log *slog.Logger, listen, sipAddr, trunk string, sc script) error {
	cat, err := prompts.Load("en")
	if err != nil {
		return err
	}
	ph, err := buildPhrases(cat)
	if err != nil {
		return err
	}
	host, portS, err := net.SplitHostPort(sipAddr)
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(portS)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("diago-ivr"))
	if err != nil {
		return err
	}
	defer ua.Close()
	dg := diago.NewDiago(ua, diago.WithLogger(log), diago.WithTransport(diago.Transport{Transport: "udp", BindHost: host, BindPort: port}))
	if err := dg.ServeBackground(ctx, func(d *diago.DialogServerSession) {}); err != nil {
		return err
	}
	s := &server{dg: dg, trunk: trunk, ph: ph, sc: sc, log: log, vs: map[string]*verification{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/verifications", s.start)
	mux.HandleFunc("GET /v1/verifications/{id}", s.get)
	mux.HandleFunc("POST /v1/verifications/{id}/check", s.check)
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); hs.Shutdown(context.Background()) }()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	s.calls.Wait()
	return nil
}

// phrases are the server's utterances (the same builders of package prompts, the same pauses), as
// 16-bit little-endian PCM at 8 kHz: diago's playback encodes it to the negotiated codec and paces it,
// which is how an application on diago plays prompts.
type phrases struct {
	challenge [10][]byte
	noKey     []byte
	noKeyBye  []byte
	codeIs    []byte
	again     []byte
	repeat    []byte
	goodbye   []byte
	cat       *prompts.Catalog
}

// pcm decodes μ-law frames to PCM bytes.
func pcm(frames [][]byte) []byte {
	var b bytes.Buffer
	for _, f := range frames {
		for _, x := range f {
			binary.Write(&b, binary.LittleEndian, g711.DecodeUlawFrame(x))
		}
	}
	return b.Bytes()
}

func buildPhrases(cat *prompts.Catalog) (*phrases, error) {
	const short, lead = 300 * time.Millisecond, 200 * time.Millisecond
	p := &phrases{cat: cat}
	for d := byte('0'); d <= '9'; d++ {
		f, err := cat.Challenge(prompts.ULaw, d)
		if err != nil {
			return nil, err
		}
		// diago sends nothing between plays, so the challenge carries its own
		// lead-in and trailing silence (the server sends comfort silence).
		p.challenge[d-'0'] = pcm(append(append(silenceFrames(cat, 200*time.Millisecond), f...), silenceFrames(cat, 300*time.Millisecond)...))
	}
	for _, b := range []struct {
		dst *[]byte
		say *prompts.Builder
	}{
		{&p.noKey, cat.Say(prompts.ULaw).Prompt(prompts.NoKey).Pause(short)},
		{&p.noKeyBye, cat.Say(prompts.ULaw).Prompt(prompts.NoKey).Pause(short).Prompt(prompts.Goodbye).Pause(lead)},
		{&p.codeIs, cat.Say(prompts.ULaw).Pause(lead).Prompt(prompts.CodeIs).Pause(2 * lead)},
		{&p.again, cat.Say(prompts.ULaw).Pause(lead).Prompt(prompts.Again).Pause(2 * lead)},
		{&p.repeat, cat.Say(prompts.ULaw).Pause(short).Prompt(prompts.Repeat)},
		{&p.goodbye, cat.Say(prompts.ULaw).Pause(short).Prompt(prompts.Goodbye).Pause(lead)},
	} {
		f, err := b.say.Frames()
		if err != nil {
			return nil, err
		}
		*b.dst = pcm(f)
	}
	return p, nil
}

func silenceFrames(cat *prompts.Catalog, d time.Duration) [][]byte {
	n := int(d / (20 * time.Millisecond))
	out := make([][]byte, n)
	for i := range out {
		out[i] = cat.SilenceFrame(prompts.ULaw)
	}
	return out
}

// code is the spoken code, grouped as the server says it.
func (p *phrases) code(code string) []byte {
	f, err := p.cat.Code(prompts.ULaw, code, prompts.CodeOptions{})
	if err != nil {
		return nil
	}
	return pcm(f)
}

type verification struct {
	mu       sync.Mutex
	ID       string     `json:"id"`
	To       string     `json:"to"`
	Status   string     `json:"status"`
	Calls    []*apiCall `json:"calls"`
	code     string
	approved bool
}

type apiCall struct {
	ID               string     `json:"id"`
	Status           string     `json:"status"`
	SIPStatus        int        `json:"sip_status,omitempty"`
	QueuedAt         time.Time  `json:"queued_at"`
	DialedAt         *time.Time `json:"dialed_at,omitempty"`
	AnsweredAt       *time.Time `json:"answered_at,omitempty"`
	EndedAt          *time.Time `json:"ended_at,omitempty"`
	ChallengeDigitOK bool       `json:"challenge_digit_ok"`
	CodePlays        int        `json:"code_plays"`
}

type server struct {
	dg    *diago.Diago
	trunk string
	ph    *phrases
	sc    script
	log   *slog.Logger
	calls sync.WaitGroup

	mu sync.Mutex // guards vs
	vs map[string]*verification
}

func randomDigits(n int) string {
	var b strings.Builder
	for range n {
		x, _ := rand.Int(rand.Reader, big.NewInt(10))
		b.WriteByte(byte('0' + x.Int64()))
	}
	return b.String()
}

func (s *server) start(w http.ResponseWriter, r *http.Request) {
	var req struct {
		To string `json:"to"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !strings.HasPrefix(req.To, "+") {
		http.Error(w, `{"error":{"code":"invalid_request","message":"want {\"to\":\"+E164\"}"}}`, http.StatusBadRequest)
		return
	}
	var id [16]byte
	rand.Read(id[:])
	v := &verification{ID: "VE" + hex.EncodeToString(id[:]), To: req.To, Status: "pending", code: randomDigits(6)}
	c := &apiCall{ID: "CA" + hex.EncodeToString(id[:]), Status: "queued", QueuedAt: time.Now()}
	v.Calls = []*apiCall{c}
	s.mu.Lock()
	s.vs[v.ID] = v
	s.mu.Unlock()
	s.calls.Add(1)
	go func() {
		defer s.calls.Done()
		s.call(v, c)
	}()
	s.write(w, http.StatusCreated, v)
}

func (s *server) write(w http.ResponseWriter, status int, v *verification) {
	v.mu.Lock()
	b, err := json.Marshal(v)
	v.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func (s *server) lookup(w http.ResponseWriter, r *http.Request) *verification {
	s.mu.Lock()
	v := s.vs[r.PathValue("id")]
	s.mu.Unlock()
	if v == nil {
		http.Error(w, `{"error":{"code":"not_found","message":"no such verification"}}`, http.StatusNotFound)
	}
	return v
}

func (s *server) get(w http.ResponseWriter, r *http.Request) {
	if v := s.lookup(w, r); v != nil {
		s.write(w, http.StatusOK, v)
	}
}

func (s *server) check(w http.ResponseWriter, r *http.Request) {
	v := s.lookup(w, r)
	if v == nil {
		return
	}
	var req struct {
		Code string `json:"code"`
	}
	json.NewDecoder(r.Body).Decode(&req)
	v.mu.Lock()
	st := "pending"
	if !v.approved && req.Code == v.code {
		v.approved, v.Status = true, "approved"
		st = "approved"
	}
	v.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"status":%q}`, st)
}

// call runs the script: dial, challenge, code twice, offer a repeat, goodbye, BYE.
func (s *server) call(v *verification, c *apiCall) {
	set := func(f func()) {
		v.mu.Lock()
		f()
		v.mu.Unlock()
	}
	now := func() *time.Time { t := time.Now(); return &t }
	end := func(status string) {
		set(func() { c.Status, c.EndedAt = status, now() })
	}
	set(func() { c.Status, c.DialedAt = "dialing", now() })

	host, port, _ := net.SplitHostPort(s.trunk)
	p, _ := strconv.Atoi(port)
	uri := sip.Uri{Scheme: "sip", User: v.To, Host: host, Port: p}
	ringCtx, cancel := context.WithTimeout(context.Background(), s.sc.ring)
	d, med, err := s.dg.Invite(ringCtx, uri, diago.InviteOptions{})
	cancel()
	if err != nil {
		code := 0
		var re sipgo.ErrDialogResponse
		var rp *sipgo.ErrDialogResponse
		switch {
		case errors.As(err, &re):
			code = re.Res.StatusCode
		case errors.As(err, &rp):
			code = rp.Res.StatusCode
		}
		switch {
		case code == 486 || code == 600:
			set(func() { c.SIPStatus = code })
			end("busy")
		case errors.Is(err, context.DeadlineExceeded) || code == 487:
			set(func() { c.SIPStatus = 487 })
			end("no_answer")
		default:
			s.log.Error("invite", "error", err, "type", fmt.Sprintf("%T", err))
			end("failed")
		}
		return
	}
	defer d.Close()
	set(func() { c.Status, c.SIPStatus, c.AnsweredAt = "answered", 200, now() })
	status := s.talk(d, med, v, c, set)
	if status != "abandoned" {
		hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d.Hangup(hctx)
		cancel()
	}
	end(status)
}

func (s *server) talk(d *diago.DialogClientSession, med *diago.DialogMedia, v *verification, c *apiCall, set func(func())) string {
	gone := d.Context().Done()
	pb, err := med.PlaybackCreate()
	if err != nil {
		return "failed"
	}
	play := func(pcm []byte) bool {
		done := make(chan error, 1)
		go func() { _, err := pb.Play(bytes.NewReader(pcm), "audio/pcm"); done <- err }()
		select {
		case err := <-done:
			return err == nil
		case <-gone:
			<-done
			return false
		}
	}
	// DTMF (RFC 4733) arrives on the audio stream, which a reader must drain for the whole call.
	keys := make(chan rune, 16)
	dtmf, err := med.AudioReaderDTMF()
	if err != nil {
		return "failed"
	}
	go dtmf.Listen(func(k rune) error {
		select {
		case keys <- k:
		default:
		}
		return nil
	}, 0)

	want := randomDigits(1)[0]
	passed := false
gate:
	for try := 0; try < s.sc.tries; try++ {
		utter := s.ph.challenge[want-'0']
		if try > 0 {
			utter = append(append([]byte{}, s.ph.noKey...), utter...)
		}
		if !play(utter) {
			return "abandoned"
		}
		t := time.NewTimer(s.sc.key)
		for {
			select {
			case k := <-keys:
				if byte(k) == want {
					t.Stop()
					passed = true
					break gate
				}
			case <-t.C:
				continue gate
			case <-gone:
				t.Stop()
				return "abandoned"
			}
		}
	}
	if !passed {
		play(s.ph.noKeyBye)
		return "no_input"
	}
	set(func() { c.ChallengeDigitOK = true })
	code := s.ph.code(v.code)
	for i, intro := range [][]byte{s.ph.codeIs, s.ph.again} {
		if !play(append(append([]byte{}, intro...), code...)) {
			return "abandoned"
		}
		set(func() { c.CodePlays = i + 1 })
	}
	if !play(s.ph.repeat) {
		return "abandoned"
	}
	t := time.NewTimer(s.sc.repeatWait)
	select {
	case <-t.C:
	case <-keys:
		t.Stop()
	case <-gone:
		t.Stop()
		return "abandoned"
	}
	if !play(s.ph.goodbye) {
		return "abandoned"
	}
	return "delivered"
}
