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

// Trunk is the SIP peer calls are sent to: the operator's SBC or proxy. Only
// UDP is supported for now.
type Trunk struct {
	// Host is an IP literal or a DNS name (resolved with A/AAAA records).
	Host string
	// Port is the UDP port; ParseTrunk sets 5060 when none is given.
	Port int
}

// ParseTrunk parses "sip:host[:port][;transport=udp]" or "host[:port]". IPv6
// literals must be bracketed ("[2001:db8::1]:5060"). A transport other than
// udp, a user part, other URI parameters or characters that could not appear
// in a host name are rejected.
func ParseTrunk(s string) (Trunk, error) {
	orig := s
	bad := func(why string) (Trunk, error) {
		return Trunk{}, fmt.Errorf("sip: invalid trunk %q: %s", orig, why)
	}
	if strings.HasPrefix(strings.ToLower(s), "sips:") {
		return bad("sips (TLS) is not supported")
	}
	if len(s) >= 4 && strings.EqualFold(s[:4], "sip:") {
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
			if !strings.EqualFold(v, "udp") {
				return bad("only transport=udp is supported")
			}
		}
	}
	host, port := hostport, 5060
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
	return Trunk{Host: host, Port: port}, nil
}

// String returns the trunk as a SIP URI, "sip:host:port".
func (t Trunk) String() string {
	return "sip:" + t.hostport()
}

func (t Trunk) hostport() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
}

// RequestURI builds the Request-URI "sip:<number>@host:port" for a call to
// number through t (RFC 3261 §19.1). number is validated again with
// ValidateE164, and t must hold a valid host and port.
func (t Trunk) RequestURI(number string) (string, error) {
	if err := ValidateE164(number); err != nil {
		return "", err
	}
	if err := t.validate(); err != nil {
		return "", err
	}
	return "sip:" + number + "@" + t.hostport(), nil
}

func (t Trunk) validate() error {
	if !validHost(t.Host) || t.Port < 1 || t.Port > 65535 {
		return fmt.Errorf("sip: invalid trunk %q port %d", t.Host, t.Port)
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
