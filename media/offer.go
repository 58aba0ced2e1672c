package media

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ErrBadAnswer is returned by [MarshalAnswer] for a session it cannot describe.
var ErrBadAnswer = errors.New("media: bad sdp answer")

// staticNames names the RFC 3551 §6 static audio payload types a format may use without a=rtpmap.
var staticNames = [...]string{0: "PCMU", 3: "GSM", 4: "G723", 8: "PCMA", 9: "G722", 18: "G729"}

// RemoteOffer is the first audio stream of an SDP offer we received (RFC 3264 §5), as [ParseOffer] reads
// it: the side of a call that answers (a callee, a virtual phone) starts from it.
type RemoteOffer struct {
	// Addr is where the offerer receives RTP; a media-level c= overrides the session-level c=.
	Addr netip.AddrPort
	// Codecs are the stream's audio formats in the offer's order of preference, telephone-event excluded,
	// each with the offer's payload type. A format without a=rtpmap is named by its static payload type
	// (RFC 3551 §6); a dynamic one without a=rtpmap, or one whose a=rtpmap is not mono, is left out.
	Codecs []Codec
	// DTMFPayloadType is the payload type of the first telephone-event/8000 format; 0 when HasDTMF is false.
	DTMFPayloadType uint8
	// HasDTMF reports that the offer carries telephone-event/8000 (RFC 4733 §7.1.1).
	HasDTMF bool
	// Ptime is the offer's a=ptime, or DefaultPtime when absent or unparsable.
	Ptime time.Duration
	// SSRC is the SSRC of the stream's first a=ssrc line (RFC 5576), the offerer's; 0 when it announced none.
	SSRC uint32
}

// ParseOffer parses an SDP offer body (RFC 4566, with pion/sdp) and returns its first m=audio stream. It
// applies the checks of [ParseAnswer], and its errors wrap [ErrBadSDP] in the same way: a port of 0 (a
// stream the offerer disabled) returns [ErrStreamRejected]. An offer with no audio format left after the
// rules of [RemoteOffer.Codecs] returns [ErrNoCommonCodec]. ParseOffer never panics, whatever body it
// is given.
func ParseOffer(body []byte) (RemoteOffer, error) {
	md, addr, ptime, err := parseAudio(body)
	if err != nil {
		return RemoteOffer{}, err
	}
	o := RemoteOffer{Addr: addr, Ptime: ptime, SSRC: announcedSSRC(md)}
	for _, f := range md.MediaName.Formats {
		n, err := strconv.ParseUint(f, 10, 8)
		if err != nil || n > 127 {
			continue
		}
		pt := uint8(n)
		name, rate, mapped := rtpmap(md, pt)
		switch {
		case mapped && strings.EqualFold(name, "telephone-event") && rate == 8000:
			if !o.HasDTMF {
				o.DTMFPayloadType, o.HasDTMF = pt, true
			}
		case mapped && name != "" && rate > 0:
			o.Codecs = append(o.Codecs, Codec{Name: name, PayloadType: pt, ClockRate: rate})
		case !mapped && int(pt) < len(staticNames) && staticNames[pt] != "":
			o.Codecs = append(o.Codecs, Codec{Name: staticNames[pt], PayloadType: pt, ClockRate: 8000})
		}
	}
	if len(o.Codecs) == 0 {
		return RemoteOffer{}, fmt.Errorf("%w: offer formats %v", ErrNoCommonCodec, md.MediaName.Formats)
	}
	return o, nil
}

// Negotiate chooses the codec of our answer (RFC 3264 §6.1): the first codec of prefer (nil means PCMU,
// then PCMA) that the offer carries, matched by name (case-insensitive) and clock rate, with the payload
// type the offer gave it. It returns the session as an [Answer], the same description the offerer gets
// from [ParseAnswer]: the offerer's RTP address, the codec, the offer's telephone-event payload type (we
// send and receive events on the offerer's number, RFC 4733 §7.1.1) and its ptime. No common codec returns
// [ErrNoCommonCodec].
func (o RemoteOffer) Negotiate(prefer []Codec) (Answer, error) {
	if prefer == nil {
		prefer = defaultCodecs()
	}
	for _, want := range prefer {
		for _, c := range o.Codecs {
			if strings.EqualFold(c.Name, want.Name) && c.ClockRate == want.ClockRate {
				return Answer{
					Addr:            o.Addr,
					Codec:           Codec{Name: want.Name, PayloadType: c.PayloadType, ClockRate: c.ClockRate},
					DTMFPayloadType: o.DTMFPayloadType,
					HasDTMF:         o.HasDTMF,
					Ptime:           o.Ptime,
					SSRC:            o.SSRC,
				}, nil
			}
		}
	}
	return Answer{}, fmt.Errorf("%w: offered %v", ErrNoCommonCodec, o.Codecs)
}

// MarshalAnswer writes our SDP answer (RFC 3264 §6) for a session negotiated by [RemoteOffer.Negotiate]:
// one audio stream at local carrying neg.Codec and, when neg.HasDTMF, telephone-event/8000 on
// neg.DTMFPayloadType with events 0-16, a=ptime:20 and a=sendrecv. The payload types are the offer's, as
// §6.1 requires. sessionID is the o= sess-id and sess-version; 0 draws a random one. ssrc, when not
// zero, is our stream's SSRC, announced as a=ssrc (RFC 5576) as [Offer.SSRC] is. Errors wrap
// [ErrBadAnswer]: a local address that is not a unicast IP with a port, or payload types out of range or
// colliding.
func MarshalAnswer(local netip.AddrPort, neg Answer, sessionID uint64, ssrc uint32) ([]byte, error) {
	ip := local.Addr().Unmap()
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || local.Port() == 0 {
		return nil, fmt.Errorf("%w: address %v is not a unicast ip and port", ErrBadAnswer, local)
	}
	if neg.HasDTMF && neg.DTMFPayloadType > 127 {
		return nil, fmt.Errorf("%w: telephone-event payload type %d", ErrBadAnswer, neg.DTMFPayloadType)
	}
	return marshalAudio(ip, local.Port(), []Codec{neg.Codec}, neg.DTMFPayloadType, neg.HasDTMF, sessionID, ssrc, ErrBadAnswer)
}
