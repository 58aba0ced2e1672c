package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/voiceotp/voiceotp/loadtest"
	"github.com/voiceotp/voiceotp/media"
	"github.com/voiceotp/voiceotp/prompts"
)

// cmdLoadtest drives calls through a server with a farm of virtual phones
// (package loadtest) and reports what happened: every call's outcome is
// compared with what its phone's behaviour should produce, every code the
// phones hear is checked over the API. It exits 0 only when every call was
// as expected, 1 when any was not, 2 on a usage error.
//
// With --spawn the server runs in this process (memory store, the farm as
// its trunk, short ring timeout); with --api it is a server already running,
// whose trunk must point at --phone-listen.
func cmdLoadtest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ivr loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: ivr loadtest [flags]

Drive voice OTP calls through a server with a farm of virtual phones on
loopback that answer, listen, press the asked key and recognise the code,
then check each code over the API. Either --spawn a server in this process,
or point --api at a running one whose trunk is sip:<--phone-listen>.

  ivr loadtest --spawn --calls 200 --cps 20
  ivr loadtest --api http://127.0.0.1:8080 --api-key $KEY --phone-listen 127.0.0.1:5090 --duration 2m --cps 50

Flags:
`)
		fs.PrintDefaults()
	}
	cps := fs.Float64("cps", 10, "verifications started per second")
	concurrency := fs.Int("concurrency", loadtest.DefaultConcurrency, "maximum calls in flight (start request to verdict); starts wait for a free slot")
	calls := fs.Int("calls", 0, "number of calls to start (default 100 when --duration is not set)")
	duration := fs.Duration("duration", 0, "start calls for this long instead of a number of calls")
	apiURL := fs.String("api", "", "base URL of a running server's API, e.g. http://127.0.0.1:8080")
	apiKey := fs.String("api-key", "", "API key for --api (default: $IVR_API_KEY)")
	spawn := fs.Bool("spawn", false, "start a server in this process, with the memory store and the phone farm as its trunk")
	mixFlag := fs.String("mix", loadtest.DefaultMix().String(), "behaviour=weight of the phones: answer, nokey, busy, noanswer, hangup")
	answerDelay := fs.String("answer-delay", "200ms-1s", "how long phones ring before answering: a duration or a uniform range MIN-MAX")
	pressDelay := fs.String("press-delay", "0", "how long phones take to press the asked digit: a duration or a range MIN-MAX")
	phoneAudio := fs.String("phone-audio", "silence", "what phones send back: silence (a frame every 20 ms, full duplex), none, or a WAV file (8000 Hz mono, 16-bit PCM or 8-bit µ-law/A-law) looped for the whole call, as PATH or file:PATH")
	phoneListen := fs.String("phone-listen", "127.0.0.1:0", "SIP UDP address of the phone farm")
	phonePorts := fs.String("phone-ports", "30000-39999", "RTP port range of the phones")
	phoneMedia := fs.String("phone-media", "socket", "RTP sockets of the phones: socket (one per call) or dense (one shared socket per core, batched I/O)")
	jsonPath := fs.String("json", "", "write the JSON report to this file")
	htmlPath := fs.String("html", "", "write the HTML report (charts) to this file")
	assetsHost := fs.String("assets-host", loadtest.DefaultAssetsHost, "where the HTML report loads echarts.min.js from")
	callTimeout := fs.Duration("call-timeout", 2*time.Minute, "bound on one call, from its start request to its verdict")
	timeout := fs.Duration("timeout", 0, "bound on the whole run (default: the time to start every call, plus --call-timeout, plus 30s)")
	serverPid := fs.Int("server-pid", 0, "sample this process's CPU and memory as the server (with --api)")
	progressEvery := fs.Duration("progress-every", 5*time.Second, "period of the progress lines when stderr is not a terminal")
	// The spawned server's call settings: short, so that a run ends soon.
	ringTimeout := fs.Duration("ring-timeout", 3*time.Second, "with --spawn: CANCEL unanswered (noanswer) calls after this")
	keyTimeout := fs.Duration("key-timeout", 5*time.Second, "with --spawn: wait for the key after the challenge")
	tries := fs.Int("tries", 3, "with --spawn: how many times the challenge is played")
	repeatWait := fs.Duration("repeat-wait", time.Second, "with --spawn: wait for 1 after offering to repeat the code")
	serverPorts := fs.String("server-ports", "10000-29999", "with --spawn: RTP port range of the server")
	serverMedia := fs.String("server-media", "socket", "with --spawn: the server's media.mode, socket or dense")
	maxCPU := fs.Float64("max-cpu", 0.9, "with --spawn: the server's dispatch.max_cpu (0: off); the farm's CPU counts too, as they share the process")
	logLevel := fs.String("log-level", "error", "with --spawn: the server's log level (logs go to stderr)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process to this file (with --spawn the server's samples carry the label side=server)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "ivr loadtest: "+format+"\n", a...)
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "ivr loadtest: "+format+"\n", a...)
		return 1
	}
	if fs.NArg() > 0 {
		return usage("unexpected arguments %q", fs.Args())
	}
	if *spawn == (*apiURL != "") {
		return usage("give either --spawn or --api")
	}
	if *calls > 0 && *duration > 0 {
		return usage("give --calls or --duration, not both")
	}
	if *calls <= 0 && *duration <= 0 {
		*calls = 100
	}
	if !(*cps > 0) {
		return usage("--cps must be positive")
	}
	mix, err := loadtest.ParseMix(*mixFlag)
	if err != nil {
		return usage("--mix: %v", err)
	}
	ad, err := loadtest.ParseDelay(*answerDelay)
	if err != nil {
		return usage("--answer-delay: %v", err)
	}
	pd, err := loadtest.ParseDelay(*pressDelay)
	if err != nil {
		return usage("--press-delay: %v", err)
	}
	var noAudio bool
	var audio *loadtest.PhoneAudio
	audioName := *phoneAudio
	switch *phoneAudio {
	case "silence":
	case "none":
		noAudio = true
	default:
		path := strings.TrimPrefix(*phoneAudio, "file:")
		if path == "" {
			return usage("--phone-audio: want silence, none, or a WAV file as PATH or file:PATH")
		}
		// Loaded (and encoded) once, before any call, and shared by every phone.
		if audio, err = loadtest.LoadPhoneAudio(path); err != nil {
			return usage("--phone-audio: want silence, none or a WAV file: %v", err)
		}
		audioName = fmt.Sprintf("%s (%.1fs, looped)", audio.Name(), audio.Duration().Seconds())
	}
	ports, err := parsePortRange(*phonePorts)
	if err != nil {
		return usage("--phone-ports: %v", err)
	}
	if *phoneMedia != "socket" && *phoneMedia != "dense" {
		return usage("--phone-media: want socket or dense, not %q", *phoneMedia)
	}
	if *serverMedia != "socket" && *serverMedia != "dense" {
		return usage("--server-media: want socket or dense, not %q", *serverMedia)
	}
	phoneAddr, err := netip.ParseAddrPort(*phoneListen)
	if err != nil {
		return usage("--phone-listen: want IP:port, not %q", *phoneListen)
	}
	if *serverPid != 0 && *spawn {
		return usage("--server-pid is for --api; with --spawn this process is sampled")
	}
	if *timeout <= 0 {
		starting := *duration
		if *calls > 0 {
			starting = time.Duration(float64(*calls) / *cps * float64(time.Second))
		}
		*timeout = starting + *callTimeout + 30*time.Second
	}
	ctx, cancel := context.WithTimeoutCause(ctx, *timeout, fmt.Errorf("the run took longer than --timeout %s", *timeout))
	defer cancel()

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fail("%v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail("cpu profile: %v", err)
		}
		defer pprof.StopCPUProfile()
	}

	catalog, err := prompts.Load("en")
	if err != nil {
		return fail("%v", err)
	}
	tty := false
	if f, ok := stderr.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	target := *calls
	if *duration > 0 {
		target = 0
	}
	printer := loadtest.NewProgressPrinter(stderr, tty, target, *progressEvery)
	var procs []loadtest.Proc
	targetName := *apiURL
	if *spawn {
		procs = append(procs, loadtest.SelfProc("ivr (server + farm)"))
		targetName = "spawned in this process (memory store, media " + *serverMedia + ")"
	} else {
		if *serverPid > 0 {
			procs = append(procs, loadtest.PidProc("server", *serverPid))
		}
		procs = append(procs, loadtest.SelfProc("load tester"))
	}
	var mux *media.Mux
	if *phoneMedia == "dense" {
		if mux, err = media.NewMux(media.MuxConfig{IP: phoneAddr.Addr(), Ports: ports}); err != nil {
			return fail("phone media: %v", err)
		}
		defer mux.Close()
	}
	d, err := loadtest.NewDriver(loadtest.DriverConfig{
		Catalog:     catalog,
		PhoneListen: *phoneListen,
		Ports:       ports,
		NoAudio:     noAudio,
		Audio:       audio,
		Mux:         mux,
		Mix:         mix,
		AnswerDelay: ad,
		PressDelay:  pd,
		CPS:         *cps,
		Concurrency: *concurrency,
		Calls:       *calls,
		Duration:    *duration,
		CallTimeout: *callTimeout,
		Run:         -1,
		Procs:       procs,
		OnProgress:  printer.Update,
	})
	if err != nil {
		return usage("%v", err)
	}
	defer d.Close()

	base, key := strings.TrimRight(*apiURL, "/"), *apiKey
	if key == "" && !*spawn {
		key = os.Getenv("IVR_API_KEY")
	}
	if *spawn {
		logger, err := newLogger("text", *logLevel, stderr)
		if err != nil {
			return usage("--log-level: %v", err)
		}
		key = randomKey()
		cfg := defaultServeConfig()
		cfg.Listen = "127.0.0.1:0"
		cfg.SIP.Listen = "127.0.0.1:0"
		cfg.Trunk = "sip:" + d.PhoneAddr().String()
		cfg.APIKeys = []string{key}
		cfg.Media.Ports = *serverPorts
		cfg.Media.Mode = *serverMedia
		cfg.Dispatch.MaxCPU = *maxCPU
		cfg.Call.RingTimeout = *ringTimeout
		cfg.Call.KeyTimeout = *keyTimeout
		cfg.Call.Tries = *tries
		cfg.Call.RepeatWait = *repeatWait
		if noAudio {
			cfg.Call.RTPTimeout = 0 // silent phones would trip it
		}
		// The server's own limits sit above the load: the driver's pacing and concurrency are the test.
		cfg.Dispatch.MaxConcurrent = *concurrency
		cfg.Dispatch.CPS = 2 * *cps
		cfg.Dispatch.QueueSize = max(cfg.Dispatch.QueueSize, 2**concurrency)
		cfg.Dispatch.DrainTimeout = 5 * time.Second
		// The server's goroutines carry the profiler label side=server (goroutines inherit labels),
		// so a --cpuprofile separates it from the farm: go tool pprof -tagfocus side=server.
		labels := pprof.Labels("side", "server")
		var a *app
		pprof.Do(context.Background(), labels, func(context.Context) { a, err = newApp(cfg, logger) })
		if err != nil {
			return fail("server: %v", err)
		}
		runCtx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go pprof.Do(runCtx, labels, func(ctx context.Context) { done <- a.run(ctx) })
		defer func() { stop(); <-done }()
		base = "http://" + a.apiAddr()
		fmt.Fprintf(stderr, "server  %s (API), %s (SIP), in this process\n", base, a.ua.LocalAddr())
	}
	fmt.Fprintf(stderr, "phones  %s (SIP), mix %s, answer delay %s, audio %s\n", d.PhoneAddr(), mix, ad, audioName)
	if target > 0 {
		fmt.Fprintf(stderr, "load    %d calls at %g/s, at most %d in flight\n", target, *cps, *concurrency)
	} else {
		fmt.Fprintf(stderr, "load    %g calls/s for %s, at most %d in flight\n", *cps, *duration, *concurrency)
	}

	rep, runErr := d.Run(ctx, loadtest.NewClient(base, key, nil, *concurrency))
	rep.Settings.Target = targetName
	fmt.Fprintln(stdout)
	if err := rep.WriteSummary(stdout); err != nil {
		return fail("%v", err)
	}
	write := func(path string, f func(io.Writer) error) error {
		if path == "" {
			return nil
		}
		out, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := f(out); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "report: %s\n", path)
		return nil
	}
	if err := write(*jsonPath, rep.WriteJSON); err != nil {
		return fail("--json: %v", err)
	}
	if err := write(*htmlPath, func(w io.Writer) error { return rep.WriteHTML(w, *assetsHost) }); err != nil {
		return fail("--html: %v", err)
	}
	switch {
	case runErr != nil:
		return fail("%v", runErr)
	case rep.Summary.Calls == 0:
		return fail("no call was made")
	case rep.Summary.Errors > 0:
		return fail("%d of %d calls were not as expected", rep.Summary.Errors, rep.Summary.Calls)
	}
	return 0
}
