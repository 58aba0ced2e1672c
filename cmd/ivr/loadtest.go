package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
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
	f, err := parseLoadtestFlags(args, stderr)
	if err != nil {
		return parseExit(err)
	}
	s, err := f.settings()
	if err != nil {
		return loadtestUsage(stderr, "%v", err)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, f.timeout, fmt.Errorf("the run took longer than --timeout %s", f.timeout))
	defer cancel()

	if f.cpuProfile != "" {
		stop, err := startCPUProfile(f.cpuProfile)
		if err != nil {
			return loadtestFail(stderr, "%v", err)
		}
		defer stop()
	}
	return runLoadtest(ctx, f, s, stdout, stderr)
}

// loadtestUsage prints a usage error of ivr loadtest and returns its exit code, 2.
func loadtestUsage(stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "ivr loadtest: "+format+"\n", a...)
	return 2
}

// loadtestFail prints why ivr loadtest failed and returns its exit code, 1.
func loadtestFail(stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "ivr loadtest: "+format+"\n", a...)
	return 1
}

// loadtestFlags is the command line of ivr loadtest.
type loadtestFlags struct {
	cps                            float64
	concurrency, calls             int
	duration                       time.Duration
	apiURL, apiKey                 string
	spawn                          bool
	mix, answerDelay, pressDelay   string
	phoneAudio, phoneListen        string
	phonePorts, phoneMedia         string
	jsonPath, htmlPath, assetsHost string
	callTimeout, timeout           time.Duration
	serverPid                      int
	progressEvery                  time.Duration
	ringTimeout, keyTimeout        time.Duration
	tries                          int
	repeatWait                     time.Duration
	serverPorts, serverMedia       string
	maxCPU                         float64
	logLevel, cpuProfile           string
	args                           []string // none are expected
}

// parseLoadtestFlags parses ivr loadtest's command line; the error is flag.ErrHelp after --help.
func parseLoadtestFlags(args []string, stderr io.Writer) (*loadtestFlags, error) {
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
	var f loadtestFlags
	f.define(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	f.args = fs.Args()
	return &f, nil
}

// define declares every flag of ivr loadtest on fs, bound to f's fields.
func (f *loadtestFlags) define(fs *flag.FlagSet) {
	fs.Float64Var(&f.cps, "cps", 10, "verifications started per second")
	fs.IntVar(&f.concurrency, "concurrency", loadtest.DefaultConcurrency, "maximum calls in flight (start request to verdict); starts wait for a free slot")
	fs.IntVar(&f.calls, "calls", 0, "number of calls to start (default 100 when --duration is not set)")
	fs.DurationVar(&f.duration, "duration", 0, "start calls for this long instead of a number of calls")
	fs.StringVar(&f.apiURL, "api", "", "base URL of a running server's API, e.g. http://127.0.0.1:8080")
	fs.StringVar(&f.apiKey, "api-key", "", "API key for --api (default: $IVR_API_KEY)")
	fs.BoolVar(&f.spawn, "spawn", false, "start a server in this process, with the memory store and the phone farm as its trunk")
	fs.StringVar(&f.mix, "mix", loadtest.DefaultMix().String(), "behaviour=weight of the phones: answer, nokey, busy, noanswer, hangup")
	fs.StringVar(&f.answerDelay, "answer-delay", "200ms-1s", "how long phones ring before answering: a duration or a uniform range MIN-MAX")
	fs.StringVar(&f.pressDelay, "press-delay", "0", "how long phones take to press the asked digit: a duration or a range MIN-MAX")
	fs.StringVar(&f.phoneAudio, "phone-audio", "silence", "what phones send back: silence (a frame every 20 ms, full duplex), none, or a WAV file (8000 Hz mono, 16-bit PCM or 8-bit µ-law/A-law) looped for the whole call, as PATH or file:PATH")
	fs.StringVar(&f.phoneListen, "phone-listen", "127.0.0.1:0", "SIP UDP address of the phone farm")
	fs.StringVar(&f.phonePorts, "phone-ports", "30000-39999", "RTP port range of the phones")
	fs.StringVar(&f.phoneMedia, "phone-media", "socket", "RTP sockets of the phones: socket (one per call) or dense (one shared socket per core, batched I/O)")
	fs.StringVar(&f.jsonPath, "json", "", "write the JSON report to this file")
	fs.StringVar(&f.htmlPath, "html", "", "write the HTML report (charts) to this file")
	fs.StringVar(&f.assetsHost, "assets-host", loadtest.DefaultAssetsHost, "where the HTML report loads echarts.min.js from")
	fs.DurationVar(&f.callTimeout, "call-timeout", 2*time.Minute, "bound on one call, from its start request to its verdict")
	fs.DurationVar(&f.timeout, "timeout", 0, "bound on the whole run (default: the time to start every call, plus --call-timeout, plus 30s)")
	fs.IntVar(&f.serverPid, "server-pid", 0, "sample this process's CPU and memory as the server (with --api)")
	fs.DurationVar(&f.progressEvery, "progress-every", 5*time.Second, "period of the progress lines when stderr is not a terminal")
	// The spawned server's call settings: short, so that a run ends soon.
	fs.DurationVar(&f.ringTimeout, "ring-timeout", 3*time.Second, "with --spawn: CANCEL unanswered (noanswer) calls after this")
	fs.DurationVar(&f.keyTimeout, "key-timeout", 5*time.Second, "with --spawn: wait for the key after the challenge")
	fs.IntVar(&f.tries, "tries", 3, "with --spawn: how many times the challenge is played")
	fs.DurationVar(&f.repeatWait, "repeat-wait", time.Second, "with --spawn: wait for 1 after offering to repeat the code")
	fs.StringVar(&f.serverPorts, "server-ports", "10000-29999", "with --spawn: RTP port range of the server")
	fs.StringVar(&f.serverMedia, "server-media", "socket", "with --spawn: the server's media.mode, socket or dense")
	fs.Float64Var(&f.maxCPU, "max-cpu", 0.9, "with --spawn: the server's dispatch.max_cpu (0: off); the farm's CPU counts too, as they share the process")
	fs.StringVar(&f.logLevel, "log-level", "error", "with --spawn: the server's log level (logs go to stderr)")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of this process to this file (with --spawn the server's samples carry the label side=server)")
}

// phoneSettings are the phone farm's flags, parsed.
type phoneSettings struct {
	mix                     loadtest.Mix
	answerDelay, pressDelay loadtest.Delay
	noAudio                 bool
	audio                   *loadtest.PhoneAudio // nil: silence or none
	audioName               string
	ports                   media.PortRange
	listen                  netip.AddrPort
}

// settings checks the flags, fills the defaults that depend on others (--calls, --timeout), and parses
// the phone farm's; every error is a usage error.
func (f *loadtestFlags) settings() (*phoneSettings, error) {
	if err := f.checkRun(); err != nil {
		return nil, err
	}
	var s phoneSettings
	if err := f.phoneBehaviour(&s); err != nil {
		return nil, err
	}
	if err := f.phoneNetwork(&s); err != nil {
		return nil, err
	}
	if f.serverPid != 0 && f.spawn {
		return nil, errors.New("--server-pid is for --api; with --spawn this process is sampled")
	}
	if f.timeout <= 0 {
		starting := f.duration
		if f.calls > 0 {
			starting = time.Duration(float64(f.calls) / f.cps * float64(time.Second))
		}
		f.timeout = starting + f.callTimeout + 30*time.Second
	}
	return &s, nil
}

// checkRun checks which server is driven, how many calls and how fast; --calls defaults to 100.
func (f *loadtestFlags) checkRun() error {
	if len(f.args) > 0 {
		return fmt.Errorf("unexpected arguments %q", f.args)
	}
	if f.spawn == (f.apiURL != "") {
		return errors.New("give either --spawn or --api")
	}
	if f.calls > 0 && f.duration > 0 {
		return errors.New("give --calls or --duration, not both")
	}
	if f.calls <= 0 && f.duration <= 0 {
		f.calls = 100
	}
	if !(f.cps > 0) {
		return errors.New("--cps must be positive")
	}
	return nil
}

// phoneBehaviour parses how the phones behave: the mix, the delays, the audio they send.
func (f *loadtestFlags) phoneBehaviour(s *phoneSettings) error {
	var err error
	if s.mix, err = loadtest.ParseMix(f.mix); err != nil {
		return fmt.Errorf("--mix: %v", err)
	}
	if s.answerDelay, err = loadtest.ParseDelay(f.answerDelay); err != nil {
		return fmt.Errorf("--answer-delay: %v", err)
	}
	if s.pressDelay, err = loadtest.ParseDelay(f.pressDelay); err != nil {
		return fmt.Errorf("--press-delay: %v", err)
	}
	s.audioName = f.phoneAudio
	switch f.phoneAudio {
	case "silence":
	case "none":
		s.noAudio = true
	default:
		path := strings.TrimPrefix(f.phoneAudio, "file:")
		if path == "" {
			return errors.New("--phone-audio: want silence, none, or a WAV file as PATH or file:PATH")
		}
		// Loaded (and encoded) once, before any call, and shared by every phone.
		if s.audio, err = loadtest.LoadPhoneAudio(path); err != nil {
			return fmt.Errorf("--phone-audio: want silence, none or a WAV file: %v", err)
		}
		s.audioName = fmt.Sprintf("%s (%.1fs, looped)", s.audio.Name(), s.audio.Duration().Seconds())
	}
	return nil
}

// phoneNetwork parses where the phones listen and how their RTP is carried (and the spawned server's).
func (f *loadtestFlags) phoneNetwork(s *phoneSettings) error {
	var err error
	if s.ports, err = parsePortRange(f.phonePorts); err != nil {
		return fmt.Errorf("--phone-ports: %v", err)
	}
	if f.phoneMedia != "socket" && f.phoneMedia != "dense" {
		return fmt.Errorf("--phone-media: want socket or dense, not %q", f.phoneMedia)
	}
	if f.serverMedia != "socket" && f.serverMedia != "dense" {
		return fmt.Errorf("--server-media: want socket or dense, not %q", f.serverMedia)
	}
	if s.listen, err = netip.ParseAddrPort(f.phoneListen); err != nil {
		return fmt.Errorf("--phone-listen: want IP:port, not %q", f.phoneListen)
	}
	return nil
}

// startCPUProfile profiles this process into path until the returned stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %v", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// runLoadtest starts the phone farm and its driver, then drives the load; it returns the exit code.
func runLoadtest(ctx context.Context, f *loadtestFlags, s *phoneSettings, stdout, stderr io.Writer) int {
	catalog, err := prompts.Load("en")
	if err != nil {
		return loadtestFail(stderr, "%v", err)
	}
	printer := loadtest.NewProgressPrinter(stderr, isTerminal(stderr), f.target(), f.progressEvery)
	var mux *media.Mux
	if f.phoneMedia == "dense" {
		if mux, err = media.NewMux(media.MuxConfig{IP: s.listen.Addr(), Ports: s.ports}); err != nil {
			return loadtestFail(stderr, "phone media: %v", err)
		}
		defer mux.Close()
	}
	d, err := loadtest.NewDriver(f.driverConfig(s, catalog, mux, printer.Update))
	if err != nil {
		return loadtestUsage(stderr, "%v", err)
	}
	defer d.Close()
	return f.drive(ctx, d, s, stdout, stderr)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// target is the number of calls the run starts, or 0 when it runs for a duration.
func (f *loadtestFlags) target() int {
	if f.duration > 0 {
		return 0
	}
	return f.calls
}

// driverConfig is the load driver's Config: the phones, the load, and the processes to sample.
func (f *loadtestFlags) driverConfig(s *phoneSettings, catalog *prompts.Catalog, mux *media.Mux, onProgress func(loadtest.Progress)) loadtest.DriverConfig {
	return loadtest.DriverConfig{
		Catalog:     catalog,
		PhoneListen: f.phoneListen,
		Ports:       s.ports,
		NoAudio:     s.noAudio,
		Audio:       s.audio,
		Mux:         mux,
		Mix:         s.mix,
		AnswerDelay: s.answerDelay,
		PressDelay:  s.pressDelay,
		CPS:         f.cps,
		Concurrency: f.concurrency,
		Calls:       f.calls,
		Duration:    f.duration,
		CallTimeout: f.callTimeout,
		Run:         -1,
		Procs:       f.procs(),
		OnProgress:  onProgress,
	}
}

// procs are the processes sampled during the run: this one, and with --api the server's if given.
func (f *loadtestFlags) procs() []loadtest.Proc {
	var procs []loadtest.Proc
	if f.spawn {
		procs = append(procs, loadtest.SelfProc("ivr (server + farm)"))
	} else {
		if f.serverPid > 0 {
			procs = append(procs, loadtest.PidProc("server", f.serverPid))
		}
		procs = append(procs, loadtest.SelfProc("load tester"))
	}
	return procs
}

// targetName names the server driven, for the report.
func (f *loadtestFlags) targetName() string {
	if f.spawn {
		return "spawned in this process (memory store, media " + f.serverMedia + ")"
	}
	return f.apiURL
}

// drive points the driver at the server (spawning it with --spawn), runs the load and reports; it
// returns the exit code.
func (f *loadtestFlags) drive(ctx context.Context, d *loadtest.Driver, s *phoneSettings, stdout, stderr io.Writer) int {
	base, key := strings.TrimRight(f.apiURL, "/"), f.apiKey
	if key == "" && !f.spawn {
		key = os.Getenv("IVR_API_KEY")
	}
	if f.spawn {
		logger, err := newLogger("text", f.logLevel, stderr)
		if err != nil {
			return loadtestUsage(stderr, "--log-level: %v", err)
		}
		key = randomKey()
		a, stop, err := spawnServer(f.spawnConfig(d.PhoneAddr(), key, s.noAudio), logger)
		if err != nil {
			return loadtestFail(stderr, "server: %v", err)
		}
		defer stop()
		base = "http://" + a.apiAddr()
		fmt.Fprintf(stderr, "server  %s (API), %s (SIP), in this process\n", base, a.ua.LocalAddr())
	}
	f.printLoad(stderr, d.PhoneAddr(), s)

	rep, runErr := d.Run(ctx, loadtest.NewClient(base, key, nil, f.concurrency))
	rep.Settings.Target = f.targetName()
	return f.report(rep, runErr, stdout, stderr)
}

// spawnConfig is the spawned server's config: the farm as its trunk, short call timeouts, and limits
// above the load, so that the driver's pacing and concurrency are the test.
func (f *loadtestFlags) spawnConfig(phones netip.AddrPort, key string, noAudio bool) serveConfig {
	cfg := defaultServeConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.SIP.Listen = "127.0.0.1:0"
	cfg.Trunk = "sip:" + phones.String()
	cfg.APIKeys = []string{key}
	cfg.Policy.AllowPrefixes = []string{loadtest.NumberPrefix} // the farm's fictional numbers
	cfg.Media.Ports = f.serverPorts
	cfg.Media.Mode = f.serverMedia
	cfg.Dispatch.MaxCPU = f.maxCPU
	cfg.Call.RingTimeout = f.ringTimeout
	cfg.Call.KeyTimeout = f.keyTimeout
	cfg.Call.Tries = f.tries
	cfg.Call.RepeatWait = f.repeatWait
	if noAudio {
		cfg.Call.RTPTimeout = 0 // silent phones would trip it
	}
	// The server's own limits sit above the load: the driver's pacing and concurrency are the test.
	cfg.Dispatch.MaxConcurrent = f.concurrency
	cfg.Dispatch.CPS = 2 * f.cps
	cfg.Dispatch.QueueSize = max(cfg.Dispatch.QueueSize, 2*f.concurrency)
	cfg.Dispatch.DrainTimeout = 5 * time.Second
	return cfg
}

// spawnServer starts the server in this process; stop stops it and returns once it has.
func spawnServer(cfg serveConfig, logger *slog.Logger) (*app, func(), error) {
	// The server's goroutines carry the profiler label side=server (goroutines inherit labels),
	// so a --cpuprofile separates it from the farm: go tool pprof -tagfocus side=server.
	labels := pprof.Labels("side", "server")
	var a *app
	var err error
	pprof.Do(context.Background(), labels, func(context.Context) { a, err = newApp(cfg, logger) })
	if err != nil {
		return nil, nil, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go pprof.Do(runCtx, labels, func(ctx context.Context) { done <- a.run(ctx) })
	return a, func() { stop(); <-done }, nil
}

// printLoad prints what the phones do and the load they are given.
func (f *loadtestFlags) printLoad(stderr io.Writer, phones netip.AddrPort, s *phoneSettings) {
	fmt.Fprintf(stderr, "phones  %s (SIP), mix %s, answer delay %s, audio %s\n", phones, s.mix, s.answerDelay, s.audioName)
	if target := f.target(); target > 0 {
		fmt.Fprintf(stderr, "load    %d calls at %g/s, at most %d in flight\n", target, f.cps, f.concurrency)
	} else {
		fmt.Fprintf(stderr, "load    %g calls/s for %s, at most %d in flight\n", f.cps, f.duration, f.concurrency)
	}
}

// report prints the summary, writes the reports asked for, and returns the run's exit code.
func (f *loadtestFlags) report(rep *loadtest.Report, runErr error, stdout, stderr io.Writer) int {
	fmt.Fprintln(stdout)
	if err := rep.WriteSummary(stdout); err != nil {
		return loadtestFail(stderr, "%v", err)
	}
	if err := writeReport(stdout, f.jsonPath, rep.WriteJSON); err != nil {
		return loadtestFail(stderr, "--json: %v", err)
	}
	if err := writeReport(stdout, f.htmlPath, func(w io.Writer) error { return rep.WriteHTML(w, f.assetsHost) }); err != nil {
		return loadtestFail(stderr, "--html: %v", err)
	}
	switch {
	case runErr != nil:
		return loadtestFail(stderr, "%v", runErr)
	case rep.Summary.Calls == 0:
		return loadtestFail(stderr, "no call was made")
	case rep.Summary.Errors > 0:
		return loadtestFail(stderr, "%d of %d calls were not as expected", rep.Summary.Errors, rep.Summary.Calls)
	}
	return 0
}

// writeReport writes a report with write into the file at path and says so on stdout; an empty path
// writes nothing.
func writeReport(stdout io.Writer, path string, write func(io.Writer) error) error {
	if path == "" {
		return nil
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(out); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "report: %s\n", path)
	return nil
}
