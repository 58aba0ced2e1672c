package sip

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrBadInfo: the body of a SIP INFO is not a DTMF key press this package understands.
var ErrBadInfo = errors.New("sip: bad dtmf info")

// maxInfoBody is the largest INFO body ParseDTMFInfo reads. A key press takes a few dozen bytes.
const maxInfoBody = 1024

// infoKeys maps RFC 4733 §3.2 event codes 0-15, which some gateways put in the body instead of the
// key, to the keys.
const infoKeys = "0123456789*#ABCD"

// ParseDTMFInfo extracts a key press from the body of a SIP INFO request (RFC 6086). INFO carries
// DTMF in one of two de facto formats, neither of them an RFC nor an RFC 6086 Info Package, both
// sent by carriers and PBXs for decades:
//
//   - application/dtmf-relay (Cisco): lines "Key=value" separated by CRLF or LF, in any order and
//     with keys in any case, of which Signal is required and Duration (in milliseconds) optional,
//     for example "Signal=5\r\nDuration=160\r\n". Other keys (Volume, …) are ignored; a Duration
//     that is not a number is ignored (dur is then 0); a second Signal line makes the body bad.
//   - application/dtmf: the body is the key alone, for example "5".
//
// In both, the key is one of 0-9, *, #, A-D (a-d accepted), or an RFC 4733 §3.2 event code in
// decimal: 10 for *, 11 for #, 12-15 for A-D, as some gateways send. Space around keys and values is
// ignored. contentType is the Content-Type header value; parameters (";charset=utf-8") and case do
// not matter.
//
// Any other content type, a body of more than 1 KiB, or a body with no valid key yields an error
// that wraps ErrBadInfo; the error never quotes the body. ParseDTMFInfo never panics.
func ParseDTMFInfo(contentType string, body []byte) (digit byte, dur time.Duration, err error) {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.TrimSpace(mt)
	relay := strings.EqualFold(mt, "application/dtmf-relay")
	if !relay && !strings.EqualFold(mt, "application/dtmf") {
		return 0, 0, fmt.Errorf("%w: content type %.64q is not application/dtmf-relay or application/dtmf", ErrBadInfo, mt)
	}
	if len(body) > maxInfoBody {
		return 0, 0, fmt.Errorf("%w: body of %d bytes, more than %d", ErrBadInfo, len(body), maxInfoBody)
	}
	if !relay {
		if digit, ok := parseInfoKey(bytes.TrimSpace(body)); ok {
			return digit, 0, nil
		}
		return 0, 0, fmt.Errorf("%w: application/dtmf body is not a key", ErrBadInfo)
	}

	var found bool
	for line := range bytes.SplitSeq(body, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte("="))
		if !ok {
			continue
		}
		k, v = bytes.TrimSpace(k), bytes.TrimSpace(v) // TrimSpace also drops the CR of CRLF
		switch {
		case bytes.EqualFold(k, []byte("signal")):
			if found {
				return 0, 0, fmt.Errorf("%w: application/dtmf-relay body with two Signal lines", ErrBadInfo)
			}
			if digit, ok = parseInfoKey(v); !ok {
				return 0, 0, fmt.Errorf("%w: application/dtmf-relay Signal is not a key", ErrBadInfo)
			}
			found = true
		case bytes.EqualFold(k, []byte("duration")):
			if ms, err := strconv.ParseUint(string(v), 10, 32); err == nil {
				dur = time.Duration(ms) * time.Millisecond
			}
		}
	}
	if !found {
		return 0, 0, fmt.Errorf("%w: application/dtmf-relay body without a Signal line", ErrBadInfo)
	}
	return digit, dur, nil
}

// parseInfoKey reads a key: one of 0-9 * # A-D a-d, or an RFC 4733 event code 0-15 in decimal.
func parseInfoKey(v []byte) (byte, bool) {
	switch {
	case len(v) == 1 && strings.IndexByte(infoKeys, v[0]) >= 0:
		return v[0], true
	case len(v) == 1 && v[0] >= 'a' && v[0] <= 'd':
		return v[0] - 'a' + 'A', true
	case len(v) == 2 && v[0] >= '0' && v[0] <= '1' && v[1] >= '0' && v[1] <= '9':
		if ev := int(v[0]-'0')*10 + int(v[1]-'0'); ev < len(infoKeys) {
			return infoKeys[ev], true
		}
	}
	return 0, false
}
