package media

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func sdpLines(lines ...string) []byte { return []byte(strings.Join(lines, "\r\n") + "\r\n") }

func TestParseOffer(t *testing.T) {
	head := []string{"v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"}
	offer := func(lines ...string) []byte { return sdpLines(append(append([]string{}, head...), lines...)...) }
	tests := []struct {
		name    string
		body    []byte
		want    RemoteOffer
		wantErr error
	}{
		{
			name: "ours",
			body: offer("m=audio 4000 RTP/AVP 0 8 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
				"a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=ptime:20"),
			want: RemoteOffer{Addr: netip.MustParseAddrPort("192.0.2.1:4000"), Codecs: []Codec{PCMU, PCMA},
				DTMFPayloadType: 101, HasDTMF: true, Ptime: 20 * time.Millisecond},
		},
		{
			name: "static types without rtpmap, dtmf 96, media-level c=",
			body: offer("m=audio 4002 RTP/AVP 8 18 0 96", "c=IN IP4 198.51.100.7", "a=rtpmap:96 telephone-event/8000", "a=ptime:30"),
			want: RemoteOffer{Addr: netip.MustParseAddrPort("198.51.100.7:4002"),
				Codecs:          []Codec{PCMA, {Name: "G729", PayloadType: 18, ClockRate: 8000}, PCMU},
				DTMFPayloadType: 96, HasDTMF: true, Ptime: 30 * time.Millisecond},
		},
		{
			name: "no dtmf, dynamic opus kept, unmapped dynamic dropped",
			body: offer("m=audio 4004 RTP/AVP 111 97 0", "a=rtpmap:111 opus/48000/2", "a=rtpmap:0 PCMU/8000"),
			want: RemoteOffer{Addr: netip.MustParseAddrPort("192.0.2.1:4004"), Codecs: []Codec{PCMU}, Ptime: DefaultPtime},
		},
		{name: "disabled stream", body: offer("m=audio 0 RTP/AVP 0"), wantErr: ErrStreamRejected},
		{name: "only telephone-event", body: offer("m=audio 4000 RTP/AVP 101", "a=rtpmap:101 telephone-event/8000"), wantErr: ErrNoCommonCodec},
		{name: "no audio", body: offer("m=video 4000 RTP/AVP 96"), wantErr: ErrBadSDP},
		{name: "SRTP", body: offer("m=audio 4000 RTP/SAVP 0"), wantErr: ErrBadSDP},
		{name: "hold address", body: sdpLines("v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "c=IN IP4 0.0.0.0", "t=0 0", "m=audio 4000 RTP/AVP 0"), wantErr: ErrBadSDP},
		{name: "empty", body: nil, wantErr: ErrBadSDP},
		{name: "garbage", body: []byte("hello\x00world"), wantErr: ErrBadSDP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOffer(tt.body)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrBadSDP) {
					t.Fatalf("err = %v, want %v (and ErrBadSDP)", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Addr != tt.want.Addr || got.DTMFPayloadType != tt.want.DTMFPayloadType || got.HasDTMF != tt.want.HasDTMF ||
				got.Ptime != tt.want.Ptime || len(got.Codecs) != len(tt.want.Codecs) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got.Codecs {
				if got.Codecs[i] != tt.want.Codecs[i] {
					t.Errorf("codec %d = %+v, want %+v", i, got.Codecs[i], tt.want.Codecs[i])
				}
			}
		})
	}
}

func TestNegotiate(t *testing.T) {
	o := RemoteOffer{Addr: netip.MustParseAddrPort("192.0.2.1:4000"),
		Codecs:          []Codec{{Name: "pcmu", PayloadType: 0, ClockRate: 8000}, {Name: "PCMA", PayloadType: 8, ClockRate: 8000}},
		DTMFPayloadType: 96, HasDTMF: true, Ptime: DefaultPtime}
	tests := []struct {
		name    string
		prefer  []Codec
		want    string
		wantErr error
	}{
		{"default prefers PCMU", nil, "PCMU", nil},
		{"A-law first", []Codec{PCMA, PCMU}, "PCMA", nil},
		{"only G.722", []Codec{{Name: "G722", PayloadType: 9, ClockRate: 8000}}, "", ErrNoCommonCodec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := o.Negotiate(tt.prefer)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (a.Codec.Name != tt.want || a.Addr != o.Addr || a.DTMFPayloadType != 96 || !a.HasDTMF) {
				t.Errorf("answer %+v", a)
			}
		})
	}
}

// Our offer, answered by MarshalAnswer, negotiates back to the same session at the offerer.
func TestAnswerRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		name   string
		prefer []Codec
		dtmf   uint8
	}{
		{"PCMU dtmf 101", nil, 101},
		{"PCMA dtmf 96", []Codec{PCMA}, 96},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ours := Offer{Addr: netip.MustParseAddrPort("127.0.0.1:20000"), DTMFPayloadType: tt.dtmf}
			body, err := ours.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			ro, err := ParseOffer(body)
			if err != nil {
				t.Fatal(err)
			}
			neg, err := ro.Negotiate(tt.prefer)
			if err != nil {
				t.Fatal(err)
			}
			ans, err := MarshalAnswer(netip.MustParseAddrPort("127.0.0.1:30000"), neg, 7, 0)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseAnswer(ours, ans)
			if err != nil {
				t.Fatalf("ParseAnswer: %v\n%s", err, ans)
			}
			if got.Addr != netip.MustParseAddrPort("127.0.0.1:30000") || got.Codec != neg.Codec ||
				!got.HasDTMF || got.DTMFPayloadType != tt.dtmf {
				t.Errorf("offerer sees %+v, callee negotiated %+v", got, neg)
			}
		})
	}
	t.Run("ssrc announced both ways", func(t *testing.T) {
		ours := Offer{Addr: netip.MustParseAddrPort("127.0.0.1:20000"), SSRC: 4000000001}
		body, err := ours.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body), "a=ssrc:4000000001 cname:") {
			t.Errorf("offer has no a=ssrc with a cname:\n%s", body)
		}
		ro, err := ParseOffer(body)
		if err != nil {
			t.Fatal(err)
		}
		neg, err := ro.Negotiate(nil)
		if err != nil || ro.SSRC != 4000000001 || neg.SSRC != 4000000001 {
			t.Fatalf("callee read ssrc %d, negotiated %d (%v)", ro.SSRC, neg.SSRC, err)
		}
		ans, err := MarshalAnswer(netip.MustParseAddrPort("127.0.0.1:30000"), neg, 7, 42)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseAnswer(ours, ans)
		if err != nil || got.SSRC != 42 {
			t.Errorf("offerer read ssrc %d (%v) from\n%s", got.SSRC, err, ans)
		}
		plain, _ := Offer{Addr: ours.Addr}.Marshal()
		if strings.Contains(string(plain), "ssrc") {
			t.Errorf("offer without SSRC announces one:\n%s", plain)
		}
		for _, bad := range []string{"a=ssrc:", "a=ssrc:x cname:y", "a=ssrc:99999999999 cname:y", "a=ssrc:-1"} {
			b := sdpLines("v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
				"m=audio 4000 RTP/AVP 0", bad)
			if a, err := ParseAnswer(ours, b); err != nil || a.SSRC != 0 {
				t.Errorf("%q: ssrc %d, err %v", bad, a.SSRC, err)
			}
		}
	})
	t.Run("no dtmf in the offer, none in the answer", func(t *testing.T) {
		ans, err := MarshalAnswer(netip.MustParseAddrPort("127.0.0.1:30000"), Answer{Codec: PCMU}, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(ans), "telephone-event") {
			t.Errorf("answer offers telephone-event:\n%s", ans)
		}
	})
	t.Run("bad address", func(t *testing.T) {
		if _, err := MarshalAnswer(netip.MustParseAddrPort("0.0.0.0:3000"), Answer{Codec: PCMU}, 1, 0); !errors.Is(err, ErrBadAnswer) {
			t.Errorf("err = %v", err)
		}
	})
}

func FuzzParseOffer(f *testing.F) {
	ours, _ := Offer{Addr: netip.MustParseAddrPort("127.0.0.1:20000")}.Marshal()
	f.Add(ours)
	f.Add(sdpLines("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/AVP 8 18 0 96", "a=rtpmap:96 telephone-event/8000"))
	f.Add(sdpLines("v=0", "o=- 1 1 IN IP6 ::1", "s=-", "c=IN IP6 ::1", "t=0 0", "m=audio 4000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000/2"))
	f.Add([]byte("v=0\r\nm=audio 1 RTP/AVP 300 -1 x\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := ParseOffer(body)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) {
				t.Fatalf("error %v does not wrap ErrBadSDP", err)
			}
			return
		}
		if !o.Addr.IsValid() || o.Addr.Port() == 0 || len(o.Codecs) == 0 {
			t.Fatalf("accepted offer %+v", o)
		}
		if neg, err := o.Negotiate([]Codec{PCMU, PCMA}); err == nil {
			if _, err := MarshalAnswer(netip.MustParseAddrPort("127.0.0.1:30000"), neg, 1, 0); err != nil {
				t.Fatalf("cannot answer a negotiated offer: %v", err)
			}
		}
	})
}
