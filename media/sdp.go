package media

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/pion/sdp/v3"
)

// Codec is an audio codec as it appears on an SDP m= line and its a=rtpmap (RFC 4566 §6, RFC 3551 §6).
type Codec struct {
	Name        string // encoding name as in a=rtpmap, e.g. "PCMU"
	PayloadType uint8  // RTP payload type, 0-127
	ClockRate   uint32 // RTP clock rate in Hz
}

// The static G.711 payload types of RFC 3551 §6. They are variables only because Go has no struct
// constants: this package never writes them, and callers must not either.
var (
	PCMU = Codec{Name: "PCMU", PayloadType: 0, ClockRate: 8000}
	PCMA = Codec{Name: "PCMA", PayloadType: 8, ClockRate: 8000}
)

// DefaultDTMFPayloadType is the telephone-event payload type we offer when [Offer.DTMFPayloadType] is 0.
const DefaultDTMFPayloadType = 101

// DefaultPtime is the packetisation interval we send at, and the one assumed when an answer has no a=ptime.
const DefaultPtime = 20 * time.Millisecond

// maxSDPSize bounds the SDP body ParseAnswer accepts; real answers are well under 2 KiB.
const maxSDPSize = 64 << 10

// Errors returned by [Offer.Marshal] and [ParseAnswer]. Every ParseAnswer error wraps ErrBadSDP;
// ErrStreamRejected and ErrNoCommonCodec wrap it too, so callers may test for either.
var (
	ErrBadSDP         = errors.New("media: bad sdp")
	ErrStreamRejected = fmt.Errorf("%w: audio stream rejected (port 0)", ErrBadSDP)
	ErrNoCommonCodec  = fmt.Errorf("%w: no common codec", ErrBadSDP)
	ErrBadOffer       = errors.New("media: bad sdp offer")
)

// defaultCodecs returns a fresh copy of the codecs offered when [Offer.Codecs] is nil.
func defaultCodecs() []Codec {
	return []Codec{
		{Name: "PCMU", PayloadType: 0, ClockRate: 8000},
		{Name: "PCMA", PayloadType: 8, ClockRate: 8000},
	}
}

// Offer describes our SDP offer (RFC 3264 §5): one audio stream over RTP/AVP carrying the codecs in
// order of preference, telephone-event/8000 with events 0-16 (RFC 4733 §2.4.1, §7.1.1), a=ptime:20 and
// a=sendrecv.
type Offer struct {
	Addr            netip.AddrPort // our RTP address, used in o=, c= and the m= port; must be a unicast IP and a non-zero port
	Codecs          []Codec        // in order of preference; nil means PCMU, PCMA
	DTMFPayloadType uint8          // dynamic payload type (96-127) for telephone-event; 0 means 101
	SessionID       uint64         // o= sess-id and sess-version; 0 means a random one (below 2^63), chosen per Marshal call
	// SSRC, when not zero, is announced as a=ssrc (RFC 5576 §4.1) so that a far end receiving many
	// streams on one port can tell ours apart before the first packet; the Sender must use it
	// ([SenderConfig.SSRC]). Zero announces none.
	SSRC uint32
}

func (o Offer) codecs() []Codec {
	if o.Codecs == nil {
		return defaultCodecs()
	}
	return o.Codecs
}

func (o Offer) dtmfPT() uint8 {
	if o.DTMFPayloadType == 0 {
		return DefaultDTMFPayloadType
	}
	return o.DTMFPayloadType
}

// Marshal writes the offer as SDP (RFC 4566) with CRLF line endings. It returns an error wrapping
// [ErrBadOffer] when the address is not a usable unicast IP with a port, when there is no codec, or when
// payload types collide or are out of range.
//
// The o= line carries SessionID as both sess-id and sess-version (RFC 3264 §5 leaves both to us); a zero
// SessionID draws a fresh random one on every call, so set it when the same offer must marshal the same.
func (o Offer) Marshal() ([]byte, error) {
	ip := o.Addr.Addr().Unmap()
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || o.Addr.Port() == 0 {
		return nil, fmt.Errorf("%w: address %v is not a unicast ip and port", ErrBadOffer, o.Addr)
	}
	codecs := o.codecs()
	if len(codecs) == 0 {
		return nil, fmt.Errorf("%w: no codec", ErrBadOffer)
	}
	dtmf := o.dtmfPT()
	if dtmf < 96 || dtmf > 127 {
		return nil, fmt.Errorf("%w: telephone-event payload type %d is not dynamic (96-127)", ErrBadOffer, dtmf)
	}
	return marshalAudio(ip, o.Addr.Port(), codecs, dtmf, true, o.SessionID, o.SSRC, ErrBadOffer)
}

// marshalAudio writes a session of one audio stream (RFC 4566): the codecs in order, telephone-event on
// dtmf when withDTMF (events 0-16, RFC 4733 §2.4.1), a=ptime:20, a=sendrecv and, when ssrc is not zero,
// a=ssrc with a cname (RFC 5576 §4.1, §6.1). A zero id draws a random one. Errors wrap errKind.
func marshalAudio(ip netip.Addr, port uint16, codecs []Codec, dtmf uint8, withDTMF bool, id uint64, ssrc uint32, errKind error) ([]byte, error) {
	var used [128]bool
	if withDTMF {
		used[dtmf] = true
	}
	formats := make([]string, 0, len(codecs)+1)
	attrs := make([]sdp.Attribute, 0, len(codecs)+4)
	for _, c := range codecs {
		if c.PayloadType > 127 || used[c.PayloadType] || c.Name == "" || c.ClockRate == 0 {
			return nil, fmt.Errorf("%w: codec %q payload type %d clock rate %d", errKind, c.Name, c.PayloadType, c.ClockRate)
		}
		used[c.PayloadType] = true
		pt := strconv.Itoa(int(c.PayloadType))
		formats = append(formats, pt)
		attrs = append(attrs, sdp.NewAttribute("rtpmap", pt+" "+c.Name+"/"+strconv.FormatUint(uint64(c.ClockRate), 10)))
	}
	if withDTMF {
		dpt := strconv.Itoa(int(dtmf))
		formats = append(formats, dpt)
		attrs = append(attrs,
			sdp.NewAttribute("rtpmap", dpt+" telephone-event/8000"),
			sdp.NewAttribute("fmtp", dpt+" 0-16"))
	}
	attrs = append(attrs,
		sdp.NewAttribute("ptime", strconv.Itoa(int(DefaultPtime/time.Millisecond))),
		sdp.NewPropertyAttribute("sendrecv"),
	)

	if id == 0 {
		// RFC 4566 §5.2 only asks for uniqueness; staying below 2^63 keeps peers that parse it as a
		// signed 64-bit integer happy.
		id = rand.Uint64N(1<<63-1) + 1
	}
	if ssrc != 0 {
		// RFC 5576 §6.1 requires a cname with every a=ssrc; one per session is unique enough (RFC 7022).
		attrs = append(attrs, sdp.NewAttribute("ssrc",
			strconv.FormatUint(uint64(ssrc), 10)+" cname:"+strconv.FormatUint(id, 36)))
	}
	addrType := "IP4"
	if ip.Is6() {
		addrType = "IP6"
	}
	desc := sdp.SessionDescription{
		Origin: sdp.Origin{
			Username:       "-",
			SessionID:      id,
			SessionVersion: id,
			NetworkType:    "IN",
			AddressType:    addrType,
			UnicastAddress: ip.String(),
		},
		SessionName: "-",
		ConnectionInformation: &sdp.ConnectionInformation{
			NetworkType: "IN",
			AddressType: addrType,
			Address:     &sdp.Address{Address: ip.String()},
		},
		TimeDescriptions: []sdp.TimeDescription{{Timing: sdp.Timing{StartTime: 0, StopTime: 0}}},
		MediaDescriptions: []*sdp.MediaDescription{{
			MediaName: sdp.MediaName{
				Media:   "audio",
				Port:    sdp.RangedPort{Value: int(port)},
				Protos:  []string{"RTP", "AVP"},
				Formats: formats,
			},
			Attributes: attrs,
		}},
	}
	return desc.Marshal()
}

// Answer is what the remote SDP answer negotiated for the audio stream (RFC 3264 §6).
//
// Payload types are the answer's: per RFC 3264 §5.1 an endpoint receives on the numbers it lists, so we
// send Codec.PayloadType and DTMFPayloadType as the answer wrote them, which for telephone-event may differ
// from ours (e.g. 96). A [Receiver] should accept both numbers.
type Answer struct {
	Addr            netip.AddrPort // remote RTP address; a media-level c= overrides the session-level c=
	Codec           Codec          // the first format, in the answer's m= order, that matches a codec we offered
	DTMFPayloadType uint8          // telephone-event/8000 payload type in the answer; 0 when HasDTMF is false
	HasDTMF         bool           // the answer accepted telephone-event/8000
	Ptime           time.Duration  // a=ptime of the answer; DefaultPtime when absent or unparsable
	SSRC            uint32         // the first a=ssrc of the stream (RFC 5576): the remote's SSRC; 0 when it announced none
}

// ParseAnswer parses the SDP answer body (RFC 4566, with pion/sdp) and negotiates it against offer
// (RFC 3264 §6); only offer.Codecs matters. The stream used is the first m=audio line. ParseAnswer rejects, with an error wrapping
// [ErrBadSDP]: an empty, oversized or unparsable body; no m=audio line; a transport other than RTP/AVP;
// a connection address that is missing at both levels, not an IP literal (FQDNs are not resolved),
// unspecified (the RFC 2543 hold form 0.0.0.0) or multicast; and an address family that contradicts
// the c= address type. A port of 0 means the answerer rejected the stream (RFC 3264 §6) and returns
// [ErrStreamRejected]; a stream with no codec from the offer returns [ErrNoCommonCodec].
//
// A format matches an offered codec by its a=rtpmap name (case-insensitive) and clock rate, or, with no
// a=rtpmap, by an equal static payload type (below 96, RFC 3551 §6). An unparsable a=ptime is ignored.
// ParseAnswer never panics, whatever body it is given.
func ParseAnswer(offer Offer, body []byte) (Answer, error) {
	md, addr, ptime, err := parseAudio(body)
	if err != nil {
		return Answer{}, err
	}
	codec, dtmf, hasDTMF, ok := negotiate(offer.codecs(), md)
	if !ok {
		return Answer{}, fmt.Errorf("%w: answer formats %v", ErrNoCommonCodec, md.MediaName.Formats)
	}
	return Answer{
		Addr:            addr,
		Codec:           codec,
		DTMFPayloadType: dtmf,
		HasDTMF:         hasDTMF,
		Ptime:           ptime,
		SSRC:            announcedSSRC(md),
	}, nil
}

// announcedSSRC returns the SSRC of the stream's first a=ssrc line (RFC 5576 §4.1: "a=ssrc:<ssrc-id>
// <attribute>"), or 0 when there is none or it does not parse.
func announcedSSRC(md *sdp.MediaDescription) uint32 {
	v, ok := md.Attribute("ssrc")
	if !ok {
		return 0
	}
	id, _, _ := strings.Cut(strings.TrimSpace(v), " ")
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}

// parseAudio parses an SDP body and returns its first m=audio stream, the stream's RTP address and its
// a=ptime (DefaultPtime when absent or unparsable), with the checks documented on ParseAnswer. Every
// error wraps ErrBadSDP; a port of 0 returns ErrStreamRejected.
func parseAudio(body []byte) (*sdp.MediaDescription, netip.AddrPort, time.Duration, error) {
	if len(body) == 0 {
		return nil, netip.AddrPort{}, 0, fmt.Errorf("%w: empty body", ErrBadSDP)
	}
	if len(body) > maxSDPSize {
		return nil, netip.AddrPort{}, 0, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrBadSDP, len(body), maxSDPSize)
	}
	var desc sdp.SessionDescription
	if err := unmarshalSDP(&desc, body); err != nil {
		return nil, netip.AddrPort{}, 0, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}

	var md *sdp.MediaDescription
	for _, m := range desc.MediaDescriptions {
		if m != nil && m.MediaName.Media == "audio" {
			md = m
			break
		}
	}
	if md == nil {
		return nil, netip.AddrPort{}, 0, fmt.Errorf("%w: no m=audio line", ErrBadSDP)
	}
	port := md.MediaName.Port.Value
	if port == 0 {
		return nil, netip.AddrPort{}, 0, ErrStreamRejected
	}
	if port < 0 || port > 65535 {
		return nil, netip.AddrPort{}, 0, fmt.Errorf("%w: m=audio port %d", ErrBadSDP, port)
	}
	if proto := strings.Join(md.MediaName.Protos, "/"); !strings.EqualFold(proto, "RTP/AVP") {
		return nil, netip.AddrPort{}, 0, fmt.Errorf("%w: m=audio transport %q, want RTP/AVP", ErrBadSDP, proto)
	}

	ci := md.ConnectionInformation
	if ci == nil {
		ci = desc.ConnectionInformation
	}
	ip, err := connectionAddr(ci)
	if err != nil {
		return nil, netip.AddrPort{}, 0, err
	}
	ptime := DefaultPtime
	v, ok := md.Attribute("ptime")
	if !ok {
		v, ok = desc.Attribute("ptime")
	}
	if ok {
		if ms, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && ms > 0 && ms <= 1000 {
			ptime = time.Duration(ms) * time.Millisecond
		}
	}
	return md, netip.AddrPortFrom(ip, uint16(port)), ptime, nil
}

// unmarshalSDP runs the pion parser, turning a panic in it into an error: the body comes from the
// network, and a bug in a dependency must not take the process down (STYLE rule 4).
func unmarshalSDP(desc *sdp.SessionDescription, body []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sdp parser panic: %v", p)
		}
	}()
	return desc.Unmarshal(body)
}

// connectionAddr validates a c= line (RFC 4566 §5.7) and returns its unicast address.
func connectionAddr(ci *sdp.ConnectionInformation) (netip.Addr, error) {
	if ci == nil || ci.Address == nil {
		return netip.Addr{}, fmt.Errorf("%w: no c= line for the audio stream", ErrBadSDP)
	}
	if ci.NetworkType != "IN" {
		return netip.Addr{}, fmt.Errorf("%w: c= network type %q", ErrBadSDP, ci.NetworkType)
	}
	ip, err := netip.ParseAddr(ci.Address.Address)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: c= address %q is not an ip address", ErrBadSDP, ci.Address.Address)
	}
	switch {
	case ci.AddressType == "IP4" && ip.Unmap().Is4():
		ip = ip.Unmap()
	case ci.AddressType == "IP6" && ip.Is6():
	default:
		return netip.Addr{}, fmt.Errorf("%w: c= address %v does not match address type %q", ErrBadSDP, ip, ci.AddressType)
	}
	if ip.IsUnspecified() || ip.IsMulticast() {
		return netip.Addr{}, fmt.Errorf("%w: c= address %v is not unicast", ErrBadSDP, ip)
	}
	return ip, nil
}

// negotiate walks the answer's formats in order and returns the first that matches an offered codec
// and the first telephone-event/8000.
func negotiate(offered []Codec, md *sdp.MediaDescription) (codec Codec, dtmf uint8, hasDTMF, ok bool) {
	for _, f := range md.MediaName.Formats {
		n, err := strconv.ParseUint(f, 10, 8)
		if err != nil || n > 127 {
			continue
		}
		pt := uint8(n)
		name, rate, mapped := rtpmap(md, pt)
		if mapped && strings.EqualFold(name, "telephone-event") && rate == 8000 {
			if !hasDTMF {
				dtmf, hasDTMF = pt, true
			}
			continue
		}
		if ok {
			continue
		}
		for _, c := range offered {
			if (mapped && strings.EqualFold(name, c.Name) && rate == c.ClockRate) ||
				(!mapped && pt < 96 && pt == c.PayloadType) {
				codec, ok = Codec{Name: c.Name, PayloadType: pt, ClockRate: c.ClockRate}, true
				break
			}
		}
	}
	return codec, dtmf, hasDTMF, ok
}

// rtpmap finds "a=rtpmap:<pt> <name>/<rate>[/<channels>]" for pt (RFC 4566 §6). Mono is required: a
// channel count other than 1 is reported as a mapping that matches nothing.
func rtpmap(md *sdp.MediaDescription, pt uint8) (name string, rate uint32, ok bool) {
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		num, rest, found := strings.Cut(strings.TrimSpace(a.Value), " ")
		if !found {
			continue
		}
		if n, err := strconv.ParseUint(num, 10, 8); err != nil || uint8(n) != pt {
			continue
		}
		parts := strings.Split(strings.TrimSpace(rest), "/")
		if len(parts) < 2 || len(parts) > 3 {
			return "", 0, true
		}
		r, err := strconv.ParseUint(parts[1], 10, 32)
		if err != nil || (len(parts) == 3 && parts[2] != "1") {
			return "", 0, true
		}
		return parts[0], uint32(r), true
	}
	return "", 0, false
}
