package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/voiceotp/voiceotp/callflow"
	"github.com/voiceotp/voiceotp/sip"
)

// trunkYAML is one entry of trunks: in the YAML file. Passwords are better
// given as IVR_TRUNK_<NAME>_PASSWORD (name upper-cased, - and . as _).
type trunkYAML struct {
	Name              string        `yaml:"name"`
	URI               string        `yaml:"uri"`
	Username          string        `yaml:"username"`
	Password          string        `yaml:"password"`
	Realm             string        `yaml:"realm"`
	Register          bool          `yaml:"register"`
	RegisterExpiry    time.Duration `yaml:"register_expiry"`
	OutboundProxy     string        `yaml:"outbound_proxy"`
	FromUser          string        `yaml:"from_user"`
	FromDomain        string        `yaml:"from_domain"`
	PAssertedIdentity string        `yaml:"p_asserted_identity"`
	Privacy           string        `yaml:"privacy"`
	Rewrite           struct {
		StripPlus      bool   `yaml:"strip_plus"`
		Prefix         string `yaml:"prefix"`
		CountryCode    string `yaml:"country_code"`
		NationalPrefix string `yaml:"national_prefix"`
	} `yaml:"rewrite"`
	Codecs          []string      `yaml:"codecs"`
	DTMFMode        string        `yaml:"dtmf_mode"`
	SendDigits      string        `yaml:"send_digits"`
	MaxChannels     int           `yaml:"max_channels"`
	MaxCPS          float64       `yaml:"max_cps"`
	Priority        int           `yaml:"priority"`
	Weight          int           `yaml:"weight"`
	OptionsInterval time.Duration `yaml:"options_interval"`
	// NoResponseTimeout fails over when the INVITE gets no response at all (not even 100) in this time.
	NoResponseTimeout time.Duration `yaml:"no_response_timeout"`
	TLS               struct {
		CAFile             string `yaml:"ca_file"`
		ServerName         string `yaml:"server_name"`
		InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	} `yaml:"tls"`
}

var envName = regexp.MustCompile(`[^A-Z0-9]+`)

// trunkConfigs turns the configuration into sip trunks: the trunks: list,
// or the single trunk: URI with the sip: credentials. Errors name the field.
func trunkConfigs(cfg serveConfig, getenv func(string) string) ([]sip.TrunkConfig, error) {
	if len(cfg.Trunks) > 0 && cfg.Trunk != "" {
		return nil, errors.New("trunk: give either trunk (one URI) or trunks (a list), not both")
	}
	if len(cfg.Trunks) == 0 {
		if cfg.Trunk == "" {
			return nil, errors.New("trunk: required (e.g. sip:carrier.example:5060), or a trunks: list in the YAML file")
		}
		return []sip.TrunkConfig{{
			Name: "default", URI: cfg.Trunk, Username: cfg.SIP.Username, Password: cfg.SIP.Password,
			FromUser: cfg.SIP.FromUser, DTMFMode: cfg.Call.DTMFMode,
		}}, nil
	}
	seen := map[string]bool{}
	var out []sip.TrunkConfig
	for i, t := range cfg.Trunks {
		field := fmt.Sprintf("trunks[%d]", i)
		if t.Name == "" {
			return nil, fmt.Errorf("%s.name: required", field)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("%s.name: %q is used twice", field, t.Name)
		}
		seen[t.Name] = true
		if t.DTMFMode == "" {
			t.DTMFMode = cfg.Call.DTMFMode
		}
		if err := callflow.ValidDTMFMode(t.DTMFMode); err != nil {
			return nil, fmt.Errorf("%s.dtmf_mode: %w", field, err)
		}
		if strings.Trim(t.SendDigits, "0123456789*#ABCD,") != "" {
			return nil, fmt.Errorf("%s.send_digits: only 0-9 * # A-D and ',' (a 500 ms pause)", field)
		}
		for j, c := range t.Codecs {
			if c != "PCMU" && c != "PCMA" {
				return nil, fmt.Errorf("%s.codecs[%d]: PCMU or PCMA, not %q", field, j, c)
			}
		}
		password := t.Password
		if p := getenv("IVR_TRUNK_" + envName.ReplaceAllString(strings.ToUpper(t.Name), "_") + "_PASSWORD"); p != "" {
			password = p
		}
		tc := sip.TrunkConfig{
			Name: t.Name, URI: t.URI, Username: t.Username, Password: password, Realm: t.Realm,
			Register: t.Register, RegisterExpiry: t.RegisterExpiry, OutboundProxy: t.OutboundProxy,
			FromUser: t.FromUser, FromDomain: t.FromDomain, PAssertedIdentity: t.PAssertedIdentity, Privacy: t.Privacy,
			Rewrite: sip.Rewrite{StripPlus: t.Rewrite.StripPlus, Prefix: t.Rewrite.Prefix,
				CountryCode: t.Rewrite.CountryCode, NationalPrefix: t.Rewrite.NationalPrefix},
			Codecs: t.Codecs, DTMFMode: t.DTMFMode, SendDigits: t.SendDigits,
			MaxChannels: t.MaxChannels, MaxCPS: t.MaxCPS, Priority: t.Priority, Weight: t.Weight,
			OptionsInterval: t.OptionsInterval, NoResponseTimeout: t.NoResponseTimeout,
			TLS: sip.TLSConfig{CAFile: t.TLS.CAFile, ServerName: t.TLS.ServerName, InsecureSkipVerify: t.TLS.InsecureSkipVerify},
		}
		if tc.FromUser == "" {
			tc.FromUser = cfg.SIP.FromUser
		}
		if err := tc.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		out = append(out, tc)
	}
	return out, nil
}

// cmdTrunks is `ivr trunks check`: probe every configured trunk once and
// print one line each. Exit 0 only when every trunk is reachable and, where
// registration is configured, registered.
func cmdTrunks(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "Usage: ivr trunks check [--config ivr.yaml] [flags of ivr serve]")
		return 2
	}
	cfg := defaultServeConfig()
	if _, err := loadConfig("ivr trunks check", &cfg, args[1:], stderr, os.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "ivr trunks check: %v\n", err)
		return 2
	}
	tcs, err := trunkConfigs(cfg, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "ivr trunks check: %v\n", err)
		return 2
	}
	logger, err := newLogger(cfg.Log.Format, "warn", stderr)
	if err != nil {
		fmt.Fprintf(stderr, "ivr trunks check: %v\n", err)
		return 2
	}
	ua, err := sip.NewUA(sip.Config{ListenAddr: cfg.SIP.Listen, AdvertiseHost: cfg.SIP.AdvertiseHost,
		FromUser: cfg.SIP.FromUser, Logger: logger, Trace: cfg.SIP.Trace})
	if err != nil {
		fmt.Fprintf(stderr, "ivr trunks check: sip: %v\n", err)
		return 1
	}
	defer ua.Close()
	trunks, err := sip.NewTrunks(ua, tcs)
	if err != nil {
		fmt.Fprintf(stderr, "ivr trunks check: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	ok := true
	for _, st := range trunks.Check(ctx) {
		line, good := trunkLine(st)
		ok = ok && good
		fmt.Fprintln(stdout, line)
	}
	if !ok {
		return 1
	}
	return 0
}

// trunkLine renders one trunk's probe for a person: name, reachability,
// registration, round-trip time, the SIP answer, and what is wrong.
func trunkLine(st sip.TrunkStatus) (string, bool) {
	good := st.Up && (!st.Register || st.Registered)
	mark := "ok  "
	if !good {
		mark = "FAIL"
	}
	reach := "unreachable"
	if st.Up {
		reach = fmt.Sprintf("reachable rtt=%s", st.RTT.Round(time.Millisecond/10))
	}
	reg := "register=no"
	if st.Register {
		reg = "registered=no"
		if st.Registered {
			reg = "registered=yes until " + st.RegisterExpires.Format(time.RFC3339)
		}
	}
	answer := "-"
	if st.LastStatus != 0 {
		answer = fmt.Sprint(st.LastStatus)
	}
	line := fmt.Sprintf("%s %-16s %-4s %-40s %-20s %s sip=%s", mark, st.Name, st.Transport, st.URI, reach, reg, answer)
	if st.LastError != "" {
		line += "  error: " + st.LastError
	}
	return line, good
}
