package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/dispatch"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ivr.yaml")
	yaml := "trunk: sip:yaml.example:5060\nlisten: 127.0.0.1:9000\ncall:\n  key_timeout: 7s\n  tries: 2\ndispatch:\n  cps: 2.5\napi_keys: [a, b]\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := defaultServeConfig()
	var stderr bytes.Buffer
	_, err := loadConfig("ivr serve", &cfg, []string{"--config", path, "--call.tries", "4", "--otp.allow_short_codes"}, &stderr,
		env(map[string]string{"IVR_LISTEN": "127.0.0.1:9100", "IVR_CALL_TRIES": "9", "IVR_SIP_PASSWORD": "s3cret",
			"IVR_DISPATCH_MAX_CPU": "0.75", "IVR_DISPATCH_CPU_SOURCE": "system"}))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"yaml over default", cfg.Trunk, "sip:yaml.example:5060"},
		{"env over yaml", cfg.Listen, "127.0.0.1:9100"},
		{"flag over env", cfg.Call.Tries, 4},
		{"yaml duration", cfg.Call.KeyTimeout, 7 * time.Second},
		{"yaml float", cfg.Dispatch.CPS, 2.5},
		{"yaml list", strings.Join(cfg.APIKeys, ","), "a,b"},
		{"bool flag", cfg.OTP.AllowShortCodes, true},
		{"env secret", cfg.SIP.Password, "s3cret"},
		{"default kept", cfg.Call.RingTimeout, 45 * time.Second},
		{"env float", cfg.Dispatch.MaxCPU, 0.75},
		{"default max_cpu", defaultServeConfig().Dispatch.MaxCPU, 0.9},
		{"env cpu_source", cfg.Dispatch.CPUSource, "system"},
		{"default cpu_source", defaultServeConfig().Dispatch.CPUSource, "process"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("call:\n  tries: 3\n  colour: blue\n"), 0o600)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown yaml key", []string{"--config", bad}, nil, "colour"},
		{"bad env duration", nil, map[string]string{"IVR_CALL_KEY_TIMEOUT": "soon"}, "IVR_CALL_KEY_TIMEOUT"},
		{"bad flag", []string{"--dispatch.cps", "fast"}, nil, "dispatch.cps"},
		{"bad max_cpu env", nil, map[string]string{"IVR_DISPATCH_MAX_CPU": "90%"}, "IVR_DISPATCH_MAX_CPU"},
		{"missing file", []string{"--config", filepath.Join(dir, "none.yaml")}, nil, "none.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaultServeConfig()
			var stderr bytes.Buffer
			_, err := loadConfig("ivr serve", &cfg, tt.args, &stderr, env(tt.env))
			if err == nil || !strings.Contains(err.Error()+stderr.String(), tt.want) {
				t.Errorf("error %v (stderr %q) does not name %q", err, stderr.String(), tt.want)
			}
		})
	}
}

func TestServeHelpDocumentsEveryField(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"serve", "--help"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	cfg := defaultServeConfig()
	for _, f := range fields(&cfg) {
		if !strings.Contains(errb.String(), "-"+f.key) || !strings.Contains(errb.String(), f.env) {
			t.Errorf("--help does not document %s (%s)", f.key, f.env)
		}
		if f.help == "" {
			t.Errorf("%s has no help text", f.key)
		}
	}
	if !strings.Contains(errb.String(), "(default 127.0.0.1:8080)") {
		t.Error("--help does not show defaults")
	}
}

func TestServeRefusesUnsafeConfig(t *testing.T) {
	deadRedis := freeTCPAddr(t)
	tests := []struct {
		name string
		edit func(*serveConfig)
		want string
	}{
		{"no trunk", func(c *serveConfig) { c.Trunk = "" }, "trunk"},
		{"no keys on a public listener", func(c *serveConfig) { c.Listen = "0.0.0.0:8080"; c.APIKeys = nil }, "api_keys"},
		{"bad challenge", func(c *serveConfig) { c.Call.Challenge = "42" }, "call.challenge"},
		{"bad ports", func(c *serveConfig) { c.Media.Ports = "20000-10000" }, "media.ports"},
		{"zero key timeout", func(c *serveConfig) { c.Call.KeyTimeout = 0 }, "call.key_timeout"},
		{"bad media ip", func(c *serveConfig) { c.Media.IP = "host" }, "media.ip"},
		{"node name on the memory store", func(c *serveConfig) { c.Redis.Node = "a" }, "redis.node"},
		{"lease on the memory store", func(c *serveConfig) { c.Redis.Lease = time.Second }, "redis.lease"},
		{"bad redis url", func(c *serveConfig) { c.Redis.URL = "http://x" }, "redis.url"},
		{"redis not answering", func(c *serveConfig) { c.Redis.URL = "redis://" + deadRedis + "?dial_timeout=200ms" }, "redis.url"},
		{"negative sends", func(c *serveConfig) { c.Limits.SendsPerNumber = -1 }, "limits.sends_per_number"},
		{"max_cpu above one", func(c *serveConfig) { c.Dispatch.MaxCPU = 1.5 }, "dispatch.max_cpu"},
		{"unknown cpu_source", func(c *serveConfig) { c.Dispatch.CPUSource = "machine" }, "dispatch.cpu_source"},
		{"unknown media mode", func(c *serveConfig) { c.Media.Mode = "shared" }, "media.mode"},
		{"negative lanes", func(c *serveConfig) { c.Media.Lanes = -1 }, "media.lanes"},
		{"no countries on a public listener", func(c *serveConfig) { c.Listen = "0.0.0.0:0"; c.APIKeys = []string{"k"} }, "policy.countries"},
		{"unknown country", func(c *serveConfig) { c.Policy.Countries = []string{"XX"} }, "policy.countries"},
		{"countries and allow all", func(c *serveConfig) { c.Policy.Countries = []string{"US"}; c.Policy.AllowAllCountries = true }, "policy.allow_all_countries"},
		{"unknown number type", func(c *serveConfig) { c.Policy.NumberTypes = []string{"cheap"} }, "policy.number_types"},
		{"bad deny prefix", func(c *serveConfig) { c.Policy.DenyPrefixes = []string{"1900"} }, "policy.deny_prefixes"},
		{"bad caller id", func(c *serveConfig) { c.Policy.CallerIDs = []string{"voiceotp"} }, "policy.caller_ids"},
		{"negative per_api_key", func(c *serveConfig) { c.Limits.PerAPIKey = -1 }, "limits.per_api_key"},
		{"short per_country_window", func(c *serveConfig) { c.Limits.PerCountry = 5; c.Limits.PerCountryWindow = time.Millisecond }, "limits.per_country_window"},
		{"bad prefix_length", func(c *serveConfig) { c.Limits.PerPrefix = 5; c.Limits.PrefixLength = 0 }, "limits.prefix_length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaultServeConfig()
			cfg.Trunk = "sip:127.0.0.1:5080"
			cfg.Listen = "127.0.0.1:0"
			cfg.SIP.Listen = "127.0.0.1:0"
			tt.edit(&cfg)
			a, err := newApp(cfg, discardLogger())
			if err == nil {
				a.ua.Close()
				a.ln.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s", err, tt.want)
			}
		})
	}
}

func TestDispatchConfig(t *testing.T) {
	tests := []struct {
		name      string
		maxCPU    float64
		cpuSource string
		want      dispatch.CPUSource
		wantErr   string // the field the error names; "" for none
	}{
		{"default", 0.9, "process", dispatch.CPUProcess, ""},
		{"off", 0, "process", dispatch.CPUProcess, ""},
		{"every core", 1, "process", dispatch.CPUProcess, ""},
		{"small", 0.05, "process", dispatch.CPUProcess, ""},
		{"negative", -0.1, "process", "", "dispatch.max_cpu"},
		{"a percentage", 90, "process", "", "dispatch.max_cpu"},
		{"just above one", 1.0001, "process", "", "dispatch.max_cpu"},
		{"NaN", math.NaN(), "process", "", "dispatch.max_cpu"},
		{"infinite", math.Inf(1), "process", "", "dispatch.max_cpu"},
		{"system", 0.9, "system", dispatch.CPUSystem, ""},
		{"system in capitals", 0.9, "SYSTEM", dispatch.CPUSystem, ""},
		{"empty source is process", 0.9, "", dispatch.CPUProcess, ""},
		{"unknown source", 0.9, "machine", "", "dispatch.cpu_source"},
		{"a file for a source", 0.9, "/proc/stat", "", "dispatch.cpu_source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaultServeConfig()
			cfg.Dispatch.MaxCPU = tt.maxCPU
			cfg.Dispatch.CPUSource = tt.cpuSource
			d, err := dispatchConfig(cfg, discardLogger())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.MaxCPU != tt.maxCPU || d.CPUSource != tt.want || d.MaxConcurrent != 100 || d.CPS != 10 ||
				d.QueueSize != 10000 || d.DrainTimeout != 2*time.Minute || d.Logger == nil || d.CPU != nil {
				t.Errorf("dispatch.Config = %+v", d)
			}
		})
	}
}

// TestServeRunsTheSystemCPUSampler builds and runs the server with
// dispatch.cpu_source system and checks that the queue's sampler runs: the
// load it reports becomes positive while a goroutine keeps a core busy.
func TestServeRunsTheSystemCPUSampler(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the system source reads /proc/stat, which is Linux's")
	}
	cfg := defaultServeConfig()
	cfg.Trunk = "sip:127.0.0.1:5080"
	cfg.Listen = "127.0.0.1:0"
	cfg.SIP.Listen = "127.0.0.1:0"
	cfg.Dispatch.CPUSource = "system"
	a, err := newApp(cfg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var stop atomic.Bool
	spinning := make(chan struct{})
	go func() { // so that the machine is busy however quiet it was
		defer close(spinning)
		for n := 0; !stop.Load(); n++ {
			_ = n * n
		}
	}()
	defer func() {
		stop.Store(true)
		<-spinning
	}()
	// Poll the queue's load: nothing signals a sample of the sampler, which
	// takes one every 250 ms and reports a load from its second.
	var load float64
	eventually(t, 10*time.Second, "a positive CPU load from the queue while a core spins (is the system sampler running?)", func() error {
		if load = a.queue.Stats().CPULoad; load <= 0 {
			return fmt.Errorf("load %v", load)
		}
		return nil
	})
	if load > 1 {
		t.Errorf("the queue's CPU load is %v, want it in (0, 1]", load)
	}
}

// freeTCPAddr returns a loopback address nothing listens on.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestTrunksConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ivr.yaml")
	yaml := `trunks:
  - name: carrier-a
    uri: sip:127.0.0.1:5070;transport=tcp
    username: acme
    password: from-yaml
    register: true
    dtmf_mode: info
    priority: 1
  - name: backup.sbc
    uri: sips:127.0.0.1:5071
    send_digits: ",,12#"
    priority: 2
`
	os.WriteFile(path, []byte(yaml), 0o600)
	cfg := defaultServeConfig()
	getenv := env(map[string]string{"IVR_TRUNK_CARRIER_A_PASSWORD": "from-env"})
	if _, err := loadConfig("ivr serve", &cfg, []string{"--config", path}, &bytes.Buffer{}, getenv); err != nil {
		t.Fatal(err)
	}
	tcs, err := trunkConfigs(cfg, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if len(tcs) != 2 || tcs[0].Password != "from-env" || tcs[0].DTMFMode != "info" || !tcs[0].Register ||
		tcs[1].DTMFMode != "auto" || tcs[1].SendDigits != ",,12#" || tcs[1].FromUser != "voiceotp" {
		t.Errorf("trunks = %+v", tcs)
	}

	bad := []struct {
		name, yaml, want string
	}{
		{"no name", "trunks:\n  - uri: sip:127.0.0.1:5070\n", "trunks[0].name"},
		{"duplicate", "trunks:\n  - {name: a, uri: 'sip:127.0.0.1:5070'}\n  - {name: a, uri: 'sip:127.0.0.1:5071'}\n", "trunks[1].name"},
		{"dtmf mode", "trunks:\n  - {name: a, uri: 'sip:127.0.0.1:5070', dtmf_mode: loud}\n", "trunks[0].dtmf_mode"},
		{"codec", "trunks:\n  - {name: a, uri: 'sip:127.0.0.1:5070', codecs: [G729]}\n", "trunks[0].codecs[0]"},
		{"send digits", "trunks:\n  - {name: a, uri: 'sip:127.0.0.1:5070', send_digits: '12x'}\n", "trunks[0].send_digits"},
		{"bad uri", "trunks:\n  - {name: a, uri: 'http://x'}\n", "trunks[0]"},
		{"both forms", "trunk: sip:127.0.0.1:5070\ntrunks:\n  - {name: a, uri: 'sip:127.0.0.1:5070'}\n", "trunk"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "bad.yaml")
			os.WriteFile(p, []byte(tt.yaml), 0o600)
			cfg := defaultServeConfig()
			if _, err := loadConfig("ivr serve", &cfg, []string{"--config", p}, &bytes.Buffer{}, env(nil)); err != nil {
				t.Fatal(err)
			}
			_, err := trunkConfigs(cfg, env(nil))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v does not name %s", err, tt.want)
			}
		})
	}
}
