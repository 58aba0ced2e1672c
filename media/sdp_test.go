package media

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// crlf turns a readable multi-line SDP literal into wire form.
func crlf(s string) []byte {
	s = strings.TrimLeft(s, "\n")
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

func TestOfferMarshal(t *testing.T) {
	tests := []struct {
		name  string
		offer Offer
		want  string
	}{
		{
			name:  "defaults",
			offer: Offer{Addr: netip.MustParseAddrPort("192.0.2.10:4000"), SessionID: 42},
			want: `
v=0
o=- 42 42 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 4000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
`,
		},
		{
			name: "ipv6 pcma first dtmf 96",
			offer: Offer{
				Addr:            netip.MustParseAddrPort("[2001:db8::1]:10002"),
				Codecs:          []Codec{PCMA, PCMU},
				DTMFPayloadType: 96,
				SessionID:       7,
			},
			want: `
v=0
o=- 7 7 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
m=audio 10002 RTP/AVP 8 0 96
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-16
a=ptime:20
a=sendrecv
`,
		},
		{
			name:  "ipv4-mapped address is written as ipv4",
			offer: Offer{Addr: netip.MustParseAddrPort("[::ffff:198.51.100.7]:20000"), Codecs: []Codec{PCMU}, SessionID: 1},
			want: `
v=0
o=- 1 1 IN IP4 198.51.100.7
s=-
c=IN IP4 198.51.100.7
t=0 0
m=audio 20000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.offer.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if want := string(crlf(tt.want)); string(got) != want {
				t.Errorf("Marshal =\n%s\nwant\n%s", got, want)
			}
			// Our own offer must parse as an answer to itself.
			ans, err := ParseAnswer(tt.offer, got)
			if err != nil {
				t.Fatalf("ParseAnswer(own offer): %v", err)
			}
			if ans.Addr != netip.AddrPortFrom(tt.offer.Addr.Addr().Unmap(), tt.offer.Addr.Port()) {
				t.Errorf("round trip Addr = %v, want %v", ans.Addr, tt.offer.Addr)
			}
		})
	}
}

func TestOfferMarshalRandomSessionID(t *testing.T) {
	o := Offer{Addr: netip.MustParseAddrPort("192.0.2.10:4000")}
	a, err := o.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b, err := o.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(a) == string(b) {
		t.Errorf("two offers with SessionID 0 have the same o= line:\n%s", a)
	}
	if strings.Contains(string(a), "o=- 0 ") {
		t.Errorf("SessionID 0 was written literally:\n%s", a)
	}
}

func TestOfferMarshalErrors(t *testing.T) {
	addr := netip.MustParseAddrPort("192.0.2.10:4000")
	tests := []struct {
		name  string
		offer Offer
	}{
		{"zero address", Offer{}},
		{"port 0", Offer{Addr: netip.MustParseAddrPort("192.0.2.10:0")}},
		{"unspecified address", Offer{Addr: netip.MustParseAddrPort("0.0.0.0:4000")}},
		{"multicast address", Offer{Addr: netip.MustParseAddrPort("224.0.0.1:4000")}},
		{"empty codec list", Offer{Addr: addr, Codecs: []Codec{}}},
		{"duplicate payload type", Offer{Addr: addr, Codecs: []Codec{PCMU, PCMU}}},
		{"codec on dtmf payload type", Offer{Addr: addr, Codecs: []Codec{{"PCMU", 101, 8000}}}},
		{"static dtmf payload type", Offer{Addr: addr, DTMFPayloadType: 8}},
		{"dtmf payload type above 127", Offer{Addr: addr, DTMFPayloadType: 200}},
		{"codec payload type above 127", Offer{Addr: addr, Codecs: []Codec{{"X", 130, 8000}}}},
		{"codec without name", Offer{Addr: addr, Codecs: []Codec{{"", 0, 8000}}}},
		{"codec without clock rate", Offer{Addr: addr, Codecs: []Codec{{"PCMU", 0, 0}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.offer.Marshal(); !errors.Is(err, ErrBadOffer) {
				t.Errorf("Marshal error = %v, want ErrBadOffer", err)
			}
		})
	}
}

const answerPCMU = `
v=0
o=trunk 1 1 IN IP4 203.0.113.5
s=call
c=IN IP4 203.0.113.5
t=0 0
m=audio 30000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
`

func TestParseAnswer(t *testing.T) {
	offer := Offer{Addr: netip.MustParseAddrPort("192.0.2.10:4000"), SessionID: 1}
	pcmu := Answer{
		Addr:            netip.MustParseAddrPort("203.0.113.5:30000"),
		Codec:           PCMU,
		DTMFPayloadType: 101,
		HasDTMF:         true,
		Ptime:           20 * time.Millisecond,
	}
	tests := []struct {
		name    string
		offer   Offer
		body    []byte
		want    Answer
		wantErr error // nil means success; every error must also match ErrBadSDP
	}{
		{name: "pcmu with dtmf", body: crlf(answerPCMU), want: pcmu},
		{
			name: "lf line endings",
			body: []byte(strings.ReplaceAll(string(crlf(answerPCMU)), "\r\n", "\n")),
			want: pcmu,
		},
		{
			name: "pcma only without dtmf",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 203.0.113.5
				t=0 0
				m=audio 30002 RTP/AVP 8
				a=rtpmap:8 PCMA/8000
			`),
			want: Answer{Addr: netip.MustParseAddrPort("203.0.113.5:30002"), Codec: PCMA, Ptime: 20 * time.Millisecond},
		},
		{
			name: "static payload type without rtpmap",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 203.0.113.5
				t=0 0
				m=audio 30002 RTP/AVP 8
			`),
			want: Answer{Addr: netip.MustParseAddrPort("203.0.113.5:30002"), Codec: PCMA, Ptime: 20 * time.Millisecond},
		},
		{
			name: "telephone-event on payload type 96 and ptime 30",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 203.0.113.5
				t=0 0
				m=audio 30000 RTP/AVP 0 96
				a=rtpmap:0 PCMU/8000
				a=rtpmap:96 TELEPHONE-EVENT/8000
				a=fmtp:96 0-16
				a=ptime:30
			`),
			want: Answer{Addr: pcmu.Addr, Codec: PCMU, DTMFPayloadType: 96, HasDTMF: true, Ptime: 30 * time.Millisecond},
		},
		{
			name: "media-level c= overrides session c=",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 203.0.113.5
				t=0 0
				m=audio 30000 RTP/AVP 0 101
				c=IN IP4 198.51.100.77
				a=rtpmap:101 telephone-event/8000
			`),
			want: Answer{Addr: netip.MustParseAddrPort("198.51.100.77:30000"), Codec: PCMU, DTMFPayloadType: 101, HasDTMF: true, Ptime: 20 * time.Millisecond},
		},
		{
			name: "media-level c= only",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				t=0 0
				m=audio 30000 RTP/AVP 0
				c=IN IP4 198.51.100.77
			`),
			want: Answer{Addr: netip.MustParseAddrPort("198.51.100.77:30000"), Codec: PCMU, Ptime: 20 * time.Millisecond},
		},
		{
			name: "ipv6 c=",
			body: crlf(`
				v=0
				o=- 1 1 IN IP6 2001:db8::5
				s=-
				c=IN IP6 2001:db8::5
				t=0 0
				m=audio 30000 RTP/AVP 0 101
				a=rtpmap:101 telephone-event/8000
			`),
			want: Answer{Addr: netip.MustParseAddrPort("[2001:db8::5]:30000"), Codec: PCMU, DTMFPayloadType: 101, HasDTMF: true, Ptime: 20 * time.Millisecond},
		},
		{
			name: "answer order wins: 8 before 0 gives pcma",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 203.0.113.5
				t=0 0
				m=audio 30000 RTP/AVP 8 0 101
				a=rtpmap:8 PCMA/8000
				a=rtpmap:0 PCMU/8000
				a=rtpmap:101 telephone-event/8000
			`),
			want: Answer{Addr: pcmu.Addr, Codec: PCMA, DTMFPayloadType: 101, HasDTMF: true, Ptime: 20 * time.Millisecond},
		},
		{
			name: "codec we did not offer is skipped",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 203.0.113.5
				t=0 0
				m=audio 30000 RTP/AVP 18 8
				a=rtpmap:18 G729/8000
			`),
			want: Answer{Addr: pcmu.Addr, Codec: PCMA, Ptime: 20 * time.Millisecond},
		},
		{
			name:  "offer restricted to pcmu rejects pcma answer",
			offer: Offer{Codecs: []Codec{PCMU}},
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 203.0.113.5
				t=0 0
				m=audio 30000 RTP/AVP 8
			`),
			wantErr: ErrNoCommonCodec,
		},
		{
			name: "only a codec we did not offer",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 203.0.113.5
				t=0 0
				m=audio 30000 RTP/AVP 18 101
				a=rtpmap:18 G729/8000
				a=rtpmap:101 telephone-event/8000
			`),
			wantErr: ErrNoCommonCodec,
		},
		{
			name: "pcmu at another clock rate is not pcmu",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 203.0.113.5
				t=0 0
				m=audio 30000 RTP/AVP 0
				a=rtpmap:0 PCMU/16000
			`),
			wantErr: ErrNoCommonCodec,
		},
		{
			name: "port 0 rejects the stream",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 203.0.113.5
				t=0 0
				m=audio 0 RTP/AVP 0
			`),
			wantErr: ErrStreamRejected,
		},
		{name: "garbage text", body: []byte("SIP/2.0 200 OK\r\nhello world\r\n"), wantErr: ErrBadSDP},
		{name: "binary garbage", body: []byte{0, 1, 2, 0xff, '\r', '\n'}, wantErr: ErrBadSDP},
		{name: "empty", body: nil, wantErr: ErrBadSDP},
		{name: "oversized", body: make([]byte, maxSDPSize+1), wantErr: ErrBadSDP},
		{
			name: "missing m=",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 203.0.113.5
				t=0 0
			`),
			wantErr: ErrBadSDP,
		},
		{
			name: "video only",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 203.0.113.5
				t=0 0
				m=video 30000 RTP/AVP 96
			`),
			wantErr: ErrBadSDP,
		},
		{
			name: "no c= at any level",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				t=0 0
				m=audio 30000 RTP/AVP 0
			`),
			wantErr: ErrBadSDP,
		},
		{
			name: "unspecified address (old hold)",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 0.0.0.0
				t=0 0
				m=audio 30000 RTP/AVP 0
			`),
			wantErr: ErrBadSDP,
		},
		{
			name: "hostname address",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 media.example.com
				t=0 0
				m=audio 30000 RTP/AVP 0
			`),
			wantErr: ErrBadSDP,
		},
		{
			name: "ipv6 address labelled IP4",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 2001:db8::5
				t=0 0
				m=audio 30000 RTP/AVP 0
			`),
			wantErr: ErrBadSDP,
		},
		{
			name: "srtp transport",
			body: crlf(`
				v=0
				o=- 1 1 IN IP4 203.0.113.5
				s=-
				c=IN IP4 203.0.113.5
				t=0 0
				m=audio 30000 RTP/SAVP 0
			`),
			wantErr: ErrBadSDP,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := offer
			if tt.offer.Codecs != nil {
				o.Codecs = tt.offer.Codecs
			}
			got, err := ParseAnswer(o, tt.body)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrBadSDP) {
					t.Fatalf("ParseAnswer error = %v, want %v (wrapping ErrBadSDP)", err, tt.wantErr)
				}
				if got != (Answer{}) {
					t.Errorf("ParseAnswer returned %+v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAnswer: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseAnswer =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseAnswer(f *testing.F) {
	f.Add(crlf(answerPCMU))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 8 0 96\r\nc=IN IP6 ::1\r\na=rtpmap:96 telephone-event/8000\r\na=ptime:x\r\n"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4/127/3\r\nt=0 0\r\nm=audio 70000/2 RTP/AVP 0\r\n"))
	f.Add([]byte("v=0\r\n"))
	f.Add([]byte{})
	offer := Offer{Addr: netip.MustParseAddrPort("192.0.2.10:4000"), SessionID: 1}
	f.Fuzz(func(t *testing.T, body []byte) {
		ans, err := ParseAnswer(offer, body)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) {
				t.Fatalf("error %v does not wrap ErrBadSDP", err)
			}
			return
		}
		if !ans.Addr.IsValid() || ans.Addr.Port() == 0 || ans.Addr.Addr().IsUnspecified() {
			t.Fatalf("accepted unusable address %v", ans.Addr)
		}
		if ans.Codec.Name != "PCMU" && ans.Codec.Name != "PCMA" {
			t.Fatalf("negotiated codec %+v we did not offer", ans.Codec)
		}
		if ans.Ptime <= 0 {
			t.Fatalf("ptime %v", ans.Ptime)
		}
	})
}
