package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Configuration: one YAML file (--config), and every field also a flag
// (--section.field) and an environment variable (IVR_SECTION_FIELD).
// Precedence: defaults < YAML < environment < flags.
//
// The binding is derived from the struct below by reflection, so a field is
// declared once, with its yaml name, default and help, and can never exist as
// a flag but not in YAML. Libraries such as koanf or viper would still need
// every flag declared by hand; this is the part they do not remove.

// serveConfig is the whole server configuration. Tags: yaml is the key,
// help documents it (ivr serve --help prints it with the default).
type serveConfig struct {
	Listen  string   `yaml:"listen" help:"HTTP API listening address"`
	APIKeys []string `yaml:"api_keys" help:"accepted API keys (comma-separated in flags and env); serving without keys is refused unless listen is loopback"`
	Trunk   string   `yaml:"trunk" help:"a single SIP trunk that calls go to, e.g. sip:carrier.example:5060 (with sip.username/password); for several, use trunks: in the YAML file"`
	// Trunks is YAML only (a list): see trunkYAML.
	Trunks []trunkYAML `yaml:"trunks"`

	SIP struct {
		Listen        string `yaml:"listen" help:"SIP UDP listening address, also the source of our requests"`
		AdvertiseHost string `yaml:"advertise_host" help:"host put in Contact/Via when listen is 0.0.0.0 or behind NAT"`
		FromUser      string `yaml:"from_user" help:"caller ID user part of From"`
		Username      string `yaml:"username" help:"digest auth username for the trunk"`
		Password      string `yaml:"password" help:"digest auth password for the trunk (prefer IVR_SIP_PASSWORD)" secret:"true"`
		Trace         bool   `yaml:"trace" help:"log every SIP message (Authorization headers redacted)"`
	} `yaml:"sip"`

	Media struct {
		IP       string `yaml:"ip" help:"IP bound for RTP, and announced in SDP unless public_ip is set (default: the SIP listening IP)"`
		PublicIP string `yaml:"public_ip" help:"IP announced in SDP c= when behind NAT"`
		Ports    string `yaml:"ports" help:"RTP port range MIN-MAX"`
		Mode     string `yaml:"mode" help:"RTP sockets: socket (one per call) or dense (a few shared sockets, one per core, batched sendmmsg/recvmmsg)"`
		Lanes    int    `yaml:"lanes" help:"with mode dense: how many shared RTP sockets (0: one per core)"`
	} `yaml:"media"`

	Call struct {
		Challenge   string        `yaml:"challenge" help:"the gate before the code: random, any, or one digit 0-9"`
		DTMFMode    string        `yaml:"dtmf_mode" help:"how keys arrive when a trunk does not say: rfc4733, info, inband, auto (RFC 4733 if negotiated, else in-band; INFO always) or any (all three)"`
		Tries       int           `yaml:"tries" help:"how many times the challenge is played"`
		KeyTimeout  time.Duration `yaml:"key_timeout" help:"wait for the key after the challenge"`
		RingTimeout time.Duration `yaml:"ring_timeout" help:"CANCEL an unanswered call after this"`
		MaxDuration time.Duration `yaml:"max_duration" help:"maximum talk time of a call"`
		RepeatWait  time.Duration `yaml:"repeat_wait" help:"wait for 1 after offering to repeat the code"`
		MaxRepeats  int           `yaml:"max_repeats" help:"extra plays of the code a callee may ask for (0: none)"`
		RTPTimeout  time.Duration `yaml:"rtp_timeout" help:"hang up after this long without RTP from the callee (0: never)"`
	} `yaml:"call"`

	OTP struct {
		CodeLength      int           `yaml:"code_length" help:"default code length (6-10)"`
		AllowShortCodes bool          `yaml:"allow_short_codes" help:"allow 4- and 5-digit codes"`
		TTL             time.Duration `yaml:"ttl" help:"how long a verification stays pending"`
		MaxChecks       int           `yaml:"max_checks" help:"wrong checks before a verification locks"`
		MaxCalls        int           `yaml:"max_calls" help:"calls per verification"`
	} `yaml:"otp"`

	Dispatch struct {
		MaxConcurrent int           `yaml:"max_concurrent" help:"calls in progress at once"`
		CPS           float64       `yaml:"cps" help:"new calls per second"`
		QueueSize     int           `yaml:"queue_size" help:"calls waiting to be dialled before starts are refused"`
		DrainTimeout  time.Duration `yaml:"drain_timeout" help:"on shutdown, how long active calls may finish"`
		MaxCPU        float64       `yaml:"max_cpu" help:"start no new call while the CPU use that cpu_source measures is above this fraction of the cores, 0-1: queued calls wait (with redis.url, the node reads no jobs and leaves them to the others), calls in progress go on, and dials resume below max_cpu - 0.05 (0: off)"`
		CPUSource     string        `yaml:"cpu_source" help:"what max_cpu measures: process (this server's CPU time over the cores Go may use) or system (the whole machine's busy time, from /proc/stat)"`
	} `yaml:"dispatch"`

	Redis struct {
		URL   string        `yaml:"url" help:"Redis shared by several nodes: verifications, the call queue and the limits (redis://host:6379/0, redis-sentinel://h1:26379,h2:26379?master_name=m, redis-cluster://h1:7000,h2:7001; prefer IVR_REDIS_URL). Empty: the in-memory store, one process only; every other redis.* field then is refused, as several nodes on the memory store would each keep their own state" secret:"true"`
		Node  string        `yaml:"node" help:"this node's name among the nodes sharing redis.url: its consumer in the call queue and the node of the calls it claims; unique per live node (default: hostname-pid; needs redis.url)"`
		Lease time.Duration `yaml:"lease" help:"how long a node may go silent before another node reclaims the call jobs it held (0: 30s; needs redis.url)"`
	} `yaml:"redis"`

	Policy struct {
		Countries         []string `yaml:"countries" help:"ISO 3166 codes of the countries whose numbers may be called (US,GB,BR); empty is refused at start unless policy.allow_all_countries or listen is a loopback address (then every country is allowed)"`
		AllowAllCountries bool     `yaml:"allow_all_countries" help:"allow the numbers of every country; non-geographic numbers (+800, +870, +881, +882, +883, +979) stay refused unless an allow prefix covers them"`
		NumberTypes       []string `yaml:"number_types" help:"number types that may be called (libphonenumber's): mobile, fixed_line, fixed_line_or_mobile, toll_free, premium_rate, shared_cost, voip, personal_number, pager, uan, voicemail"`
		DenyPrefixes      []string `yaml:"deny_prefixes" help:"E.164 prefixes never called (+1900,+8823); the longest matching prefix of deny_prefixes and allow_prefixes decides"`
		AllowPrefixes     []string `yaml:"allow_prefixes" help:"E.164 prefixes called whatever their country, type or validity: an operator's exception (e.g. +1555 for the load tester's fictional numbers)"`
		CallerIDs         []string `yaml:"caller_ids" help:"the numbers (E.164) this server may present as caller ID when a request asks for one (caller_id); another is refused with 400 caller_id_not_allowed; empty: requests may not choose one"`
		Guard             struct {
			MinConversion    float64       `yaml:"min_conversion" help:"conversion guard: the share of ended verifications (approved, or expired/locked/failed) of a number range that must be approved; below it the range is paused, 429 prefix_paused (0: off)"`
			MinVolume        int           `yaml:"min_volume" help:"ended verifications of a number range within policy.guard.window before its conversion is judged"`
			CountryMinVolume int           `yaml:"country_min_volume" help:"the same for a whole country (0: countries are not guarded)"`
			Window           time.Duration `yaml:"window" help:"the sliding window of the guard's counts"`
			Pause            time.Duration `yaml:"pause" help:"how long the guard pauses a range (POST /v1/policy/pauses/{range}/resume lifts it early)"`
			PrefixLength     int           `yaml:"prefix_length" help:"digits after + that make a number range for the guard"`
			WebhookURL       string        `yaml:"webhook_url" help:"where the signed policy.prefix_paused webhook goes (empty: none)"`
		} `yaml:"guard"`
	} `yaml:"policy"`

	Limits struct {
		SendsPerNumber   int           `yaml:"sends_per_number" help:"starts one number may get within limits.sends_window, joins included; more answer 429 with Retry-After (0: no limit). With redis.url all nodes count together, as for every limit below"`
		SendsWindow      time.Duration `yaml:"sends_window" help:"the sliding window of limits.sends_per_number"`
		PerAPIKey        int           `yaml:"per_api_key" help:"starts one API key may make within limits.per_api_key_window; more answer 429 too_many_starts (0: no limit)"`
		PerAPIKeyWindow  time.Duration `yaml:"per_api_key_window" help:"the sliding window of limits.per_api_key"`
		PerCountry       int           `yaml:"per_country" help:"starts to one country within limits.per_country_window (0: no limit)"`
		PerCountryWindow time.Duration `yaml:"per_country_window" help:"the sliding window of limits.per_country"`
		PerPrefix        int           `yaml:"per_prefix" help:"starts to one number range (the first limits.prefix_length digits) within limits.per_prefix_window (0: no limit)"`
		PerPrefixWindow  time.Duration `yaml:"per_prefix_window" help:"the sliding window of limits.per_prefix"`
		PrefixLength     int           `yaml:"prefix_length" help:"digits after + that make a number range for limits.per_prefix"`
		PerHour          int           `yaml:"per_hour" help:"starts of the whole deployment per hour (0: no limit)"`
		PerDay           int           `yaml:"per_day" help:"starts of the whole deployment per day, a sliding 24 h (0: no limit)"`
	} `yaml:"limits"`

	Webhook struct {
		Secret       string `yaml:"secret" help:"HMAC-SHA256 key for X-Signature (prefer IVR_WEBHOOK_SECRET)" secret:"true"`
		MaxAttempts  int    `yaml:"max_attempts" help:"delivery attempts per webhook"`
		AllowHTTP    bool   `yaml:"allow_http" help:"allow http:// callback URLs (default: https only)"`
		AllowPrivate bool   `yaml:"allow_private" help:"allow callback URLs on loopback and private addresses"`
	} `yaml:"webhook"`

	Log struct {
		Format      string `yaml:"format" help:"log format: text or json"`
		Level       string `yaml:"level" help:"log level: debug, info, warn, error"`
		MaskNumbers bool   `yaml:"mask_numbers" help:"mask phone numbers in log lines (+1555***4567); false writes them in clear"`
	} `yaml:"log"`
}

func defaultServeConfig() serveConfig {
	var c serveConfig
	c.Listen = "127.0.0.1:8080"
	c.SIP.Listen = "127.0.0.1:5060"
	c.SIP.FromUser = "voiceotp"
	c.Media.Ports = "10000-20000"
	c.Media.Mode = "socket"
	c.Call.Challenge = "random"
	c.Call.DTMFMode = "auto"
	c.Call.Tries = 3
	c.Call.KeyTimeout = 5 * time.Second
	c.Call.RingTimeout = 45 * time.Second
	c.Call.MaxDuration = 2 * time.Minute
	c.Call.RepeatWait = 4 * time.Second
	c.Call.MaxRepeats = 2
	c.Call.RTPTimeout = 30 * time.Second
	c.OTP.CodeLength = 6
	c.OTP.TTL = 10 * time.Minute
	c.OTP.MaxChecks = 5
	c.OTP.MaxCalls = 5
	c.Dispatch.MaxConcurrent = 100
	c.Dispatch.CPS = 10
	c.Dispatch.QueueSize = 10000
	c.Dispatch.DrainTimeout = 2 * time.Minute
	c.Dispatch.MaxCPU = 0.9
	c.Dispatch.CPUSource = "process"
	c.Policy.NumberTypes = []string{"mobile", "fixed_line", "fixed_line_or_mobile"}
	c.Policy.Guard.MinConversion = 0.2
	c.Policy.Guard.MinVolume = 20
	c.Policy.Guard.CountryMinVolume = 200
	c.Policy.Guard.Window = time.Hour
	c.Policy.Guard.Pause = time.Hour
	c.Policy.Guard.PrefixLength = 6
	c.Limits.SendsPerNumber = 10
	c.Limits.SendsWindow = time.Hour
	c.Limits.PerAPIKeyWindow = time.Hour
	c.Limits.PerCountryWindow = time.Hour
	c.Limits.PerPrefixWindow = time.Hour
	c.Limits.PrefixLength = 6
	c.Webhook.MaxAttempts = 8
	c.Log.Format = "text"
	c.Log.Level = "info"
	c.Log.MaskNumbers = true
	return c
}

// field is one leaf of the configuration.
type field struct {
	key    string // yaml path, e.g. "sip.listen"
	env    string // IVR_SIP_LISTEN
	help   string
	secret bool
	v      reflect.Value
}

func fields(cfg any) []field {
	var out []field
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if sf.Type.Kind() == reflect.Slice && sf.Type.Elem().Kind() == reflect.Struct {
				continue // lists of objects (trunks) are YAML only
			}
			key := prefix + strings.Split(sf.Tag.Get("yaml"), ",")[0]
			if sf.Type.Kind() == reflect.Struct && sf.Type != reflect.TypeOf(time.Duration(0)) {
				walk(v.Field(i), key+".")
				continue
			}
			out = append(out, field{
				key:    key,
				env:    "IVR_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(key)),
				help:   sf.Tag.Get("help"),
				secret: sf.Tag.Get("secret") == "true",
				v:      v.Field(i),
			})
		}
	}
	walk(reflect.ValueOf(cfg).Elem(), "")
	return out
}

// fieldValue adapts a struct field to flag.Value.
type fieldValue struct{ f field }

func (fv fieldValue) String() string {
	if !fv.f.v.IsValid() {
		return ""
	}
	if fv.f.secret && !fv.f.v.IsZero() {
		return "[redacted]"
	}
	switch x := fv.f.v.Interface().(type) {
	case []string:
		return strings.Join(x, ",")
	case time.Duration:
		return x.String()
	default:
		return fmt.Sprint(x)
	}
}

func (fv fieldValue) Set(s string) error {
	v := fv.f.v
	switch v.Interface().(type) {
	case string:
		v.SetString(s)
	case []string:
		var list []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list = append(list, p)
			}
		}
		v.Set(reflect.ValueOf(list))
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration such as 5s or 2m")
		}
		v.SetInt(int64(d))
	case int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("want a whole number")
		}
		v.SetInt(int64(n))
	case float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("want a number")
		}
		v.SetFloat(f)
	case bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		v.SetBool(b)
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

func (fv fieldValue) IsBoolFlag() bool { return fv.f.v.Kind() == reflect.Bool }

// loadConfig fills cfg from defaults (already in cfg), the YAML file named
// by --config, the environment, and the flags in args, in that order. It
// returns the remaining arguments. Errors name the field and its source.
func loadConfig(name string, cfg *serveConfig, args []string, stderr io.Writer, getenv func(string) string) ([]string, error) {
	// The flags are parsed twice: first into a scratch copy, to find
	// --config; then, after the YAML file and the environment, into cfg,
	// so that flags win.
	scratch := *cfg
	fs, configPath := newConfigFlags(name, &scratch, io.Discard)
	if err := fs.Parse(args); err != nil {
		// Report usage errors (and --help) with the real flag set.
		fs, _ = newConfigFlags(name, cfg, stderr)
		return nil, fs.Parse(args)
	}
	path := *configPath
	if path == "" {
		path = getenv("IVR_CONFIG")
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	for _, f := range fields(cfg) {
		if s := getenv(f.env); s != "" {
			if err := (fieldValue{f}).Set(s); err != nil {
				return nil, fmt.Errorf("config: %s: %w", f.env, err)
			}
		}
	}
	fs, _ = newConfigFlags(name, cfg, stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

// newConfigFlags binds one flag per configuration field of cfg.
func newConfigFlags(name string, cfg *serveConfig, out io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	configPath := fs.String("config", "", "YAML configuration file (env IVR_CONFIG)")
	for _, f := range fields(cfg) {
		fs.Var(fieldValue{f}, f.key, fmt.Sprintf("%s (env %s)", f.help, f.env))
	}
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: %s [flags]\n\nEvery flag is also a key of the YAML file (--config) and an environment\nvariable. Precedence: defaults < YAML < environment < flags.\n\n", name)
		fs.PrintDefaults()
	}
	return fs, configPath
}
