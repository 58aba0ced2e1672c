package sip

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ValidateE164 reports whether s is an E.164 number in international format:
// '+' followed by 8 to 15 ASCII digits, the first of which is 1-9, and nothing
// else. Because the number ends up in the Request-URI and the To header, this
// is the gate that keeps CR/LF and other header-injection bytes off the wire
// (sipgo does not reject them in header values). The error wraps
// ErrInvalidNumber and quotes s with %q, so control characters are never
// echoed raw.
func ValidateE164(s string) error {
	const minDigits, maxDigits = 8, 15
	if len(s) < 1+minDigits || len(s) > 1+maxDigits || s[0] != '+' {
		return fmt.Errorf("%w: %q is not '+' followed by %d to %d digits", ErrInvalidNumber, s, minDigits, maxDigits)
	}
	if s[1] < '1' || s[1] > '9' {
		return fmt.Errorf("%w: %q: country code must not start with 0", ErrInvalidNumber, s)
	}
	for i := 2; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return fmt.Errorf("%w: %q contains a non-digit", ErrInvalidNumber, s)
		}
	}
	return nil
}

// Transport is the transport protocol of a SIP hop (RFC 3261 §18).
type Transport string

// The transports a Trunk can use. The zero Transport means TransportUDP.
const (
	TransportUDP Transport = "udp"
	TransportTCP Transport = "tcp"
	// TransportTLS is TCP with TLS (RFC 3261 §26.2): the peer's certificate
	// is verified (see TLSConfig); there is never a fallback to cleartext.
	TransportTLS Transport = "tls"
)

// orUDP returns t, or TransportUDP when t is empty.
func (t Transport) orUDP() Transport {
	if t == "" {
		return TransportUDP
	}
	return t
}

// upper is the transport as sipgo and the Via header spell it.
func (t Transport) upper() string { return strings.ToUpper(string(t.orUDP())) }

func (t Transport) valid() bool {
	switch t {
	case "", TransportUDP, TransportTCP, TransportTLS:
		return true
	}
	return false
}

// defaultPort is the port of a URI without one (RFC 3263 §4.2): 5061 for
// TLS, 5060 otherwise.
func (t Transport) defaultPort() int {
	if t == TransportTLS {
		return 5061
	}
	return 5060
}

// Trunk is the SIP peer calls are sent to: the operator's SBC or proxy.
type Trunk struct {
	// Host is an IP literal or a DNS name (resolved with A/AAAA records,
	// IPv4 preferred; SRV and NAPTR records are not consulted).
	Host string
	// Port is the port; ParseTrunk sets 5060 (5061 for TLS) when none is
	// given.
	Port int
	// Transport is how requests reach the trunk. If empty, UDP is used.
	Transport Transport
}

// ParseTrunk parses "sip:host[:port][;transport=udp|tcp|tls]",
// "sips:host[:port]" (TLS, RFC 3261 §19.1) or "host[:port]". The default
// port is 5060, or 5061 for TLS (RFC 3263 §4.2). IPv6 literals must be
// bracketed ("[2001:db8::1]:5060"). A user part, URI parameters other than
// transport, a sips URI with a transport other than tls, or characters that
// could not appear in a host name are rejected.
func ParseTrunk(s string) (Trunk, error) {
	orig := s
	bad := func(why string) (Trunk, error) {
		return Trunk{}, fmt.Errorf("sip: invalid trunk %q: %s", orig, why)
	}
	transport := Transport("")
	switch {
	case len(s) >= 5 && strings.EqualFold(s[:5], "sips:"):
		s, transport = s[5:], TransportTLS
	case len(s) >= 4 && strings.EqualFold(s[:4], "sip:"):
		s = s[4:]
	}
	if s == "" {
		return bad("empty")
	}
	if strings.Contains(s, "@") {
		return bad("a user part is not allowed")
	}
	hostport, params, _ := strings.Cut(s, ";")
	if params != "" {
		for _, p := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(p, "=")
			if !strings.EqualFold(k, "transport") {
				return bad("only the transport parameter is allowed")
			}
			t := Transport(strings.ToLower(v))
			if t == "" || !t.valid() {
				return bad("transport must be udp, tcp or tls")
			}
			if transport == TransportTLS && t != TransportTLS {
				return bad("a sips URI needs transport tls")
			}
			transport = t
		}
	}
	host, port := hostport, transport.defaultPort()
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return bad("port must be 1-65535")
		}
		host, port = h, n
	} else if strings.HasPrefix(hostport, "[") || strings.Count(hostport, ":") > 0 {
		return bad("malformed host:port")
	}
	if !validHost(host) {
		return bad("malformed host")
	}
	if transport == TransportUDP {
		transport = ""
	}
	return Trunk{Host: host, Port: port, Transport: transport}, nil
}

// String returns the trunk as a SIP URI: "sip:host:port" for UDP,
// "sip:host:port;transport=tcp" for TCP and "sips:host:port" for TLS.
func (t Trunk) String() string {
	switch t.Transport.orUDP() {
	case TransportTLS:
		return "sips:" + t.hostport()
	case TransportTCP:
		return "sip:" + t.hostport() + ";transport=tcp"
	}
	return "sip:" + t.hostport()
}

func (t Trunk) hostport() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
}

// uriParams is the transport parameter a URI towards t carries: none for
// UDP, ";transport=tcp" or ";transport=tls" otherwise.
func (t Trunk) uriParams() string {
	if tr := t.Transport.orUDP(); tr != TransportUDP {
		return ";transport=" + string(tr)
	}
	return ""
}

// RequestURI builds the Request-URI "sip:<number>@host:port" for a call to
// number through t (RFC 3261 §19.1), with ";transport=tcp" or
// ";transport=tls" for those transports. number is validated again with
// ValidateE164, and t must hold a valid host, port and transport.
func (t Trunk) RequestURI(number string) (string, error) {
	if err := ValidateE164(number); err != nil {
		return "", err
	}
	return t.requestURI(number)
}

// requestURI is RequestURI for a user part already validated (an E.164
// number, or one rewritten by Rewrite.Apply).
func (t Trunk) requestURI(user string) (string, error) {
	if err := t.validate(); err != nil {
		return "", err
	}
	return "sip:" + user + "@" + t.hostport() + t.uriParams(), nil
}

func (t Trunk) validate() error {
	if !validHost(t.Host) || t.Port < 1 || t.Port > 65535 {
		return fmt.Errorf("sip: invalid trunk %q port %d", t.Host, t.Port)
	}
	if !t.Transport.valid() {
		return fmt.Errorf("sip: invalid trunk transport %q", string(t.Transport))
	}
	return nil
}

// validHost accepts an IP literal or an RFC 1123 host name.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if ip := net.ParseIP(h); ip != nil {
		return true
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validUser accepts a conservative subset of the RFC 3261 §25.1 "user"
// characters: unreserved plus '+'. Nothing that could end a header or URI.
func validUser(u string) bool {
	if u == "" || len(u) > 64 {
		return false
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!~*'()+", c) >= 0) {
			return false
		}
	}
	return true
}

// validToken accepts printable ASCII without quotes or backslashes, for header
// values such as User-Agent and the digest username.
func validToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
