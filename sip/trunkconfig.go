package sip

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Defaults of TrunkConfig fields left zero.
const (
	// DefaultRegisterExpiry is the registration lifetime asked for.
	DefaultRegisterExpiry = 600 * time.Second
	// DefaultNoResponseTimeout is how long Trunks.Dial waits for any
	// response (even 100 Trying) to an INVITE before it deems the trunk
	// unreachable and fails over (RFC 3261 §17.1.1.2 would wait 32 s).
	DefaultNoResponseTimeout = 4 * time.Second
)

// Rewrite turns the E.164 number of a call into the form a trunk expects in
// the Request-URI and To header. The zero value sends the number as is
// ("+15551234567"). The rules apply in this order: the national rule (if
// CountryCode is set), else StripPlus; then Prefix.
type Rewrite struct {
	// StripPlus drops the leading '+': +15551234567 → 15551234567. The
	// national rule, when it matches, takes precedence.
	StripPlus bool
	// Prefix is prepended last, e.g. a trunk's routing prefix "9" or
	// "*31#". Digits, '*' and '#' only. If empty, nothing is prepended.
	Prefix string
	// CountryCode, if set, turns numbers of that country to national
	// format: +<CountryCode>NNN → <NationalPrefix>NNN. Numbers of other
	// countries keep their international form. 1 to 3 digits.
	CountryCode string
	// NationalPrefix is the trunk prefix of national numbers, e.g. "0"
	// (+442071838750 → 02071838750 with CountryCode "44"). Empty for
	// countries without one. Up to 4 digits.
	NationalPrefix string
}

// Apply rewrites e164, a number that passed ValidateE164, by the rules of r.
func (r Rewrite) Apply(e164 string) string {
	n := e164
	if cc := "+" + r.CountryCode; r.CountryCode != "" && strings.HasPrefix(n, cc) {
		n = r.NationalPrefix + n[len(cc):]
	} else if r.StripPlus {
		n = strings.TrimPrefix(n, "+")
	}
	return r.Prefix + n
}

func (r Rewrite) validate() error {
	if r.Prefix != "" && (len(r.Prefix) > 16 || strings.Trim(r.Prefix, "0123456789*#") != "") {
		return fmt.Errorf("rewrite.prefix: %q: up to 16 of 0-9 * #", r.Prefix)
	}
	if r.CountryCode != "" && (len(r.CountryCode) > 3 || !allDigits(r.CountryCode) || r.CountryCode[0] == '0') {
		return fmt.Errorf("rewrite.country_code: %q: 1 to 3 digits, not starting with 0", r.CountryCode)
	}
	if r.NationalPrefix != "" {
		if r.CountryCode == "" {
			return errors.New("rewrite.national_prefix: needs rewrite.country_code")
		}
		if len(r.NationalPrefix) > 4 || !allDigits(r.NationalPrefix) {
			return fmt.Errorf("rewrite.national_prefix: %q: up to 4 digits", r.NationalPrefix)
		}
	}
	return nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// TrunkConfig is one trunk of the configuration file: where calls go, how
// we authenticate and present ourselves there, and how much traffic it
// takes. Only Name and URI are required.
type TrunkConfig struct {
	// Name identifies the trunk in logs, statuses and Attempt. Letters,
	// digits, '.', '_' and '-'; unique among the trunks of a Trunks.
	Name string
	// URI is the trunk: "sip:host[:port][;transport=udp|tcp|tls]" or
	// "sips:host[:port]" (TLS, default port 5061); see ParseTrunk.
	URI string
	// Username and Password answer digest challenges (401/407, RFC 3261
	// §22) to REGISTER and INVITE. If Username is empty, challenges fail
	// the call with ErrAuth.
	Username string
	Password string
	// Realm, if set, is the only realm whose challenges are answered. If
	// empty, any realm's are.
	Realm string
	// Register makes Trunks.Run keep a registration (RFC 3261 §10) of
	// sip:Username@<FromDomain or trunk host> at the trunk. Needs Username.
	Register bool
	// RegisterExpiry is the registration lifetime asked for; it is
	// refreshed at about 80% of what the registrar grants. If zero, 600 s.
	RegisterExpiry time.Duration
	// OutboundProxy, if set, is a SIP URI ("sip:proxy.example:5060;lr",
	// transport as in URI) every out-of-dialog request of this trunk is
	// sent to, with it as the first Route (loose routing, RFC 3261 §8.1.2).
	OutboundProxy string
	// FromUser and FromDomain are the caller ID in From: sip:FromUser@
	// FromDomain. If empty, the UA's Config.FromUser, and the trunk host.
	FromUser   string
	FromDomain string
	// PAssertedIdentity, if set, is a sip:, sips: or tel: URI sent as
	// P-Asserted-Identity (RFC 3325), e.g. "sip:+15550001111@carrier.example".
	PAssertedIdentity string
	// Privacy is "", "none" or "id" (RFC 3323, RFC 3325 §9.3); anything
	// but "" is sent as the Privacy header.
	Privacy string
	// Rewrite turns the E.164 number into the trunk's format.
	Rewrite Rewrite
	// Codecs is the codec order for the call script (PCMU, PCMA); this
	// package only carries it.
	Codecs []string
	// DTMFMode is rfc4733, info, inband, auto or any, for the call script; this
	// package only carries it (INFO digits always reach Call.Digits).
	DTMFMode string
	// SendDigits are digits the call script sends after the answer, ','
	// being a 500 ms pause; this package only carries them.
	SendDigits string
	// MaxChannels caps the calls up at once on this trunk. If zero,
	// unlimited.
	MaxChannels int
	// MaxCPS caps new calls per second on this trunk (a token bucket with a
	// burst of max(1, MaxCPS)). If zero, unlimited.
	MaxCPS float64
	// Priority orders trunks: lower is tried first.
	Priority int
	// Weight is the trunk's share of calls among trunks of equal priority.
	// If zero, 1.
	Weight int
	// OptionsInterval is the period of OPTIONS probes (RFC 3261 §11) while
	// Trunks.Run runs. If zero, the trunk is not probed and is presumed up.
	OptionsInterval time.Duration
	// NoResponseTimeout is how long a call waits for any response to its
	// INVITE (even 100 Trying) before the trunk is deemed unreachable and
	// the call fails over. If zero, 4 s.
	NoResponseTimeout time.Duration
	// TLS is how a TLS trunk or proxy is verified; unused otherwise.
	TLS TLSConfig
}

// trunkNameOK reports whether a trunk name is safe in logs and URLs.
func trunkNameOK(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Validate checks every field. The error names the trunk and the field,
// e.g. `trunk "carrier-a": uri: ...`, and never contains the password.
// It reads no file: NewTrunks loads TLS.CAFile.
func (c TrunkConfig) Validate() error {
	if !trunkNameOK(c.Name) {
		return fmt.Errorf("trunk %q: name: 1 to 64 of letters, digits, '.', '_', '-'", c.Name)
	}
	if err := c.validate(); err != nil {
		return fmt.Errorf("trunk %q: %w", c.Name, err)
	}
	return nil
}

func (c TrunkConfig) validate() error {
	if c.URI == "" {
		return errors.New("uri: required")
	}
	tr, err := ParseTrunk(c.URI)
	if err != nil {
		return fmt.Errorf("uri: %w", err)
	}
	if c.Username != "" && !validToken(c.Username) {
		return errors.New("username: control characters, quotes or backslashes")
	}
	if c.Username != "" && c.Password == "" {
		return errors.New("password: required with username")
	}
	if c.Password != "" && c.Username == "" {
		return errors.New("username: required with password")
	}
	if strings.ContainsAny(c.Password, "\x00\r\n") {
		return errors.New("password: control characters")
	}
	if c.Realm != "" && !validToken(c.Realm) {
		return errors.New("realm: control characters, quotes or backslashes")
	}
	if c.Register && c.Username == "" {
		return errors.New("register: needs username and password")
	}
	if c.RegisterExpiry != 0 && (c.RegisterExpiry < 10*time.Second || c.RegisterExpiry > 24*time.Hour) {
		return fmt.Errorf("register_expiry: %s: 10s to 24h, or 0 for 600s", c.RegisterExpiry)
	}
	var proxy *Trunk
	if c.OutboundProxy != "" {
		p, err := parseProxy(c.OutboundProxy)
		if err != nil {
			return fmt.Errorf("outbound_proxy: %w", err)
		}
		proxy = &p
	}
	if c.FromUser != "" && !validUser(c.FromUser) {
		return fmt.Errorf("from_user: %q: letters, digits, '+' and -_.!~*'() only", c.FromUser)
	}
	if c.FromDomain != "" && !validHost(c.FromDomain) {
		return fmt.Errorf("from_domain: %q: a host name or IP address", c.FromDomain)
	}
	if c.PAssertedIdentity != "" {
		if _, err := parsePAI(c.PAssertedIdentity); err != nil {
			return fmt.Errorf("p_asserted_identity: %w", err)
		}
	}
	switch c.Privacy {
	case "", "none", "id":
	default:
		return fmt.Errorf("privacy: %q: \"\", \"none\" or \"id\"", c.Privacy)
	}
	if err := c.Rewrite.validate(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, codec := range c.Codecs {
		if codec != "PCMU" && codec != "PCMA" {
			return fmt.Errorf("codecs[%d]: %q: PCMU or PCMA", i, codec)
		}
		if seen[codec] {
			return fmt.Errorf("codecs[%d]: %s listed twice", i, codec)
		}
		seen[codec] = true
	}
	switch c.DTMFMode {
	case "", "rfc4733", "info", "inband", "auto", "any":
	default:
		return fmt.Errorf("dtmf_mode: %q: rfc4733, info, inband, auto or any", c.DTMFMode)
	}
	if len(c.SendDigits) > 64 || strings.Trim(c.SendDigits, "0123456789*#ABCD,") != "" {
		return errors.New("send_digits: up to 64 of 0-9 * # A-D and ',' (a 500 ms pause)")
	}
	if c.MaxChannels < 0 {
		return fmt.Errorf("max_channels: %d: 0 (unlimited) or more", c.MaxChannels)
	}
	if c.MaxCPS < 0 || math.IsNaN(c.MaxCPS) || math.IsInf(c.MaxCPS, 0) {
		return fmt.Errorf("max_cps: %v: 0 (unlimited) or more", c.MaxCPS)
	}
	if c.Weight < 0 {
		return fmt.Errorf("weight: %d: 0 (meaning 1) or more", c.Weight)
	}
	if c.OptionsInterval != 0 && c.OptionsInterval < time.Second {
		return fmt.Errorf("options_interval: %s: 1s or more, or 0 for no probes", c.OptionsInterval)
	}
	if c.NoResponseTimeout < 0 {
		return fmt.Errorf("no_response_timeout: %s: 0 (4s) or more", c.NoResponseTimeout)
	}
	tlsUsed := tr.Transport == TransportTLS || (proxy != nil && proxy.Transport == TransportTLS)
	if !tlsUsed && (c.TLS != TLSConfig{}) {
		return errors.New("tls: set, but neither uri nor outbound_proxy uses TLS")
	}
	if c.TLS.ServerName != "" && !validHost(c.TLS.ServerName) {
		return fmt.Errorf("tls.server_name: %q: a host name", c.TLS.ServerName)
	}
	return nil
}

// parseProxy parses an outbound proxy URI: a trunk URI that may carry lr.
func parseProxy(s string) (Trunk, error) {
	base, params, _ := strings.Cut(s, ";")
	var keep []string
	if params != "" {
		for _, p := range strings.Split(params, ";") {
			if !strings.EqualFold(p, "lr") && !strings.EqualFold(p, "lr=on") {
				keep = append(keep, p)
			}
		}
	}
	if len(keep) > 0 {
		base += ";" + strings.Join(keep, ";")
	}
	return ParseTrunk(base)
}

// parsePAI parses a P-Asserted-Identity URI (RFC 3325 §9.1): sip, sips or
// tel, without characters that could break the header.
func parsePAI(s string) (sip.Uri, error) {
	var u sip.Uri
	if !validToken(s) || strings.ContainsAny(s, "<> ,") {
		return u, fmt.Errorf("%q: a bare sip:, sips: or tel: URI", s)
	}
	lower := strings.ToLower(s)
	if strings.HasPrefix(lower, "tel:") {
		if !validUser(strings.TrimPrefix(s[4:], "+")) && !allDigits(s[4:]) {
			return u, fmt.Errorf("%q: a tel: URI is tel:+digits", s)
		}
		u.Scheme = "tel"
		u.User = s[4:]
		return u, nil
	}
	if !strings.HasPrefix(lower, "sip:") && !strings.HasPrefix(lower, "sips:") {
		return u, fmt.Errorf("%q: a sip:, sips: or tel: URI", s)
	}
	if err := sip.ParseUri(s, &u); err != nil {
		return u, fmt.Errorf("%q: %w", s, err)
	}
	if u.Host == "" || !validHost(u.Host) || (u.User != "" && !validUser(u.User)) {
		return u, fmt.Errorf("%q: needs a valid user and host", s)
	}
	return u, nil
}

// outbound builds the dialling parameters of a validated trunk configuration
// on ua; it loads the TLS CA file.
func (c *TrunkConfig) outbound(ua *UA) (*outbound, error) {
	tr, err := ParseTrunk(c.URI)
	if err != nil {
		return nil, fmt.Errorf("uri: %w", err)
	}
	o := &outbound{
		trunk:      tr,
		fromUser:   c.FromUser,
		fromDomain: c.FromDomain,
		creds:      credentials{username: c.Username, password: c.Password, realm: c.Realm},
		noResponse: c.NoResponseTimeout,
		cfg:        c,
	}
	if o.fromUser == "" {
		o.fromUser = ua.cfg.FromUser
	}
	if o.fromDomain == "" {
		o.fromDomain = tr.Host
	}
	if o.noResponse == 0 {
		o.noResponse = DefaultNoResponseTimeout
	}
	hopHost := tr.Host
	if c.OutboundProxy != "" {
		p, err := parseProxy(c.OutboundProxy)
		if err != nil {
			return nil, fmt.Errorf("outbound_proxy: %w", err)
		}
		o.proxy = &p
		hopHost = p.Host
	}
	if c.PAssertedIdentity != "" {
		if _, err := parsePAI(c.PAssertedIdentity); err != nil {
			return nil, fmt.Errorf("p_asserted_identity: %w", err)
		}
		o.headers = append(o.headers, sip.NewHeader("P-Asserted-Identity", "<"+c.PAssertedIdentity+">"))
	}
	if c.Privacy != "" {
		o.headers = append(o.headers, sip.NewHeader("Privacy", c.Privacy))
	}
	if o.fallback() == TransportTLS || tr.Transport == TransportTLS {
		tc, err := c.TLS.clientConfig(hopHost)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		o.tls = tc
	}
	return o, nil
}
