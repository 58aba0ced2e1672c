package callflow

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/voiceotp/voiceotp/media"
	"github.com/voiceotp/voiceotp/prompts"
)

// ChallengeMode selects what key opens the code.
type ChallengeMode int

const (
	// ChallengeRandom asks for a random digit 0-9 on every call (the default).
	// A voicemail greeting that happens to play DTMF cannot guess it.
	ChallengeRandom ChallengeMode = iota
	// ChallengeAny accepts any key.
	ChallengeAny
	// ChallengeFixed asks for one configured digit.
	ChallengeFixed
)

// Challenge is the human-presence gate played before the code.
type Challenge struct {
	Mode  ChallengeMode
	Digit byte // '0'-'9' for ChallengeFixed
}

// ParseChallenge reads "random", "any" (or "any_key") or a single digit.
func ParseChallenge(s string) (Challenge, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "random":
		return Challenge{Mode: ChallengeRandom}, nil
	case "any", "any_key":
		return Challenge{Mode: ChallengeAny}, nil
	}
	if len(s) == 1 && s[0] >= '0' && s[0] <= '9' {
		return Challenge{Mode: ChallengeFixed, Digit: s[0]}, nil
	}
	return Challenge{}, fmt.Errorf("callflow: challenge must be random, any or one digit 0-9, not %q", s)
}

// String is the inverse of ParseChallenge.
func (c Challenge) String() string {
	switch c.Mode {
	case ChallengeAny:
		return "any"
	case ChallengeFixed:
		return string(c.Digit)
	default:
		return "random"
	}
}

// Config is the call script's tunables. The zero value of each field means
// its documented default, so Config{} is a working configuration.
type Config struct {
	// Challenge is the gate; zero value => a random digit.
	Challenge Challenge
	// Tries is how many times the challenge is played; 0 => 3.
	Tries int
	// KeyTimeout is how long to wait for a key after the challenge prompt ends; 0 => 5s.
	KeyTimeout time.Duration
	// RingTimeout is how long the phone may ring before we CANCEL; 0 => 45s.
	RingTimeout time.Duration
	// MaxCallDuration bounds the talk time from the answer to our BYE; 0 => 2m.
	MaxCallDuration time.Duration
	// CodePlays is how many times the code is spoken after the gate; 0 => 2.
	CodePlays int
	// MaxRepeats bounds the extra plays the callee can ask for with "1"; 0 => 2, negative => none.
	MaxRepeats int
	// RepeatWait is how long to wait for "1" after "press 1 to hear it again"; 0 => 4s.
	RepeatWait time.Duration
	// RTPTimeout ends the call when no RTP arrives from the callee for this long; 0 => 30s, negative => never.
	RTPTimeout time.Duration
	// MediaIP is the address our RTP socket binds to (and announces in SDP
	// unless MediaPublicIP is set); zero => the SIP UA's listening address.
	MediaIP netip.Addr
	// MediaPublicIP is the address announced in SDP c= when the server sits
	// behind NAT; zero => MediaIP.
	MediaPublicIP netip.Addr
	// Codecs is the offer's codec order; nil => PCMU, PCMA.
	Codecs []media.Codec
	// DTMFMode is how keys are received when the trunk does not say:
	// "rfc4733", "info", "inband", "auto" (RFC 4733 when the answer has
	// telephone-event, else in-band tones; SIP INFO either way) or "any"
	// (all three on every call, whichever arrives first, once: for gateways
	// that negotiate telephone-event yet send tones); "" => auto. A
	// configured trunk's DTMFMode wins.
	DTMFMode string
	// Ports is the RTP port range; zero => 10000-20000.
	Ports media.PortRange
	// Code shapes how the code is spoken; zero => the prompts defaults (groups of 3).
	Code prompts.CodeOptions
}

func (c Config) withDefaults() Config {
	if c.Tries <= 0 {
		c.Tries = 3
	}
	if c.KeyTimeout <= 0 {
		c.KeyTimeout = 5 * time.Second
	}
	if c.RingTimeout <= 0 {
		c.RingTimeout = 45 * time.Second
	}
	if c.MaxCallDuration <= 0 {
		c.MaxCallDuration = 2 * time.Minute
	}
	if c.CodePlays <= 0 {
		c.CodePlays = 2
	}
	if c.MaxRepeats == 0 {
		c.MaxRepeats = 2
	} else if c.MaxRepeats < 0 {
		c.MaxRepeats = 0
	}
	if c.RepeatWait <= 0 {
		c.RepeatWait = 4 * time.Second
	}
	if c.RTPTimeout == 0 {
		c.RTPTimeout = 30 * time.Second
	} else if c.RTPTimeout < 0 {
		c.RTPTimeout = 0
	}
	return c
}

// Validate reports a configuration that cannot work, naming the field.
func (c Config) Validate() error {
	var errs []error
	if c.Challenge.Mode == ChallengeFixed && (c.Challenge.Digit < '0' || c.Challenge.Digit > '9') {
		errs = append(errs, errors.New("callflow: challenge digit must be 0-9"))
	}
	if c.Tries > 10 {
		errs = append(errs, errors.New("callflow: tries must be at most 10"))
	}
	if c.CodePlays > 5 {
		errs = append(errs, errors.New("callflow: code plays must be at most 5"))
	}
	if c.DTMFMode != "" {
		if _, err := parseDTMFMode(c.DTMFMode); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MaxRepeats > 10 {
		errs = append(errs, errors.New("callflow: max repeats must be at most 10"))
	}
	return errors.Join(errs...)
}

// dtmfMode is a set of the ways a key press may arrive.
// dtmfMode says which paths a key press may take. inbandIfNoEvents limits
// inband to answers without telephone-event.
type dtmfMode struct{ rfc4733, info, inband, inbandIfNoEvents bool }

func parseDTMFMode(s string) (dtmfMode, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		// As Asterisk's dtmf_mode=auto: RFC 4733 when the answer negotiated telephone-event, in-band
		// tones when it did not; SIP INFO is taken either way (it costs nothing until it arrives).
		return dtmfMode{rfc4733: true, info: true, inband: true, inbandIfNoEvents: true}, nil
	case "any":
		return dtmfMode{rfc4733: true, info: true, inband: true}, nil
	case "rfc4733", "rfc2833":
		return dtmfMode{rfc4733: true}, nil
	case "info":
		return dtmfMode{info: true}, nil
	case "inband":
		return dtmfMode{inband: true}, nil
	}
	return dtmfMode{}, fmt.Errorf("callflow: dtmf mode must be rfc4733, info, inband, auto or any, not %q", s)
}

// ValidDTMFMode reports whether s names a DTMF mode ("" is auto).
func ValidDTMFMode(s string) error {
	_, err := parseDTMFMode(s)
	return err
}
