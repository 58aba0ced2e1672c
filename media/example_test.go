package media_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/voiceotp/voiceotp/media"
)

func ExampleOffer_Marshal() {
	offer := media.Offer{Addr: netip.MustParseAddrPort("192.0.2.10:4000"), SessionID: 1}
	b, err := offer.Marshal()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(strings.ReplaceAll(string(b), "\r\n", "\n"))
	// Output:
	// v=0
	// o=- 1 1 IN IP4 192.0.2.10
	// s=-
	// c=IN IP4 192.0.2.10
	// t=0 0
	// m=audio 4000 RTP/AVP 0 8 101
	// a=rtpmap:0 PCMU/8000
	// a=rtpmap:8 PCMA/8000
	// a=rtpmap:101 telephone-event/8000
	// a=fmtp:101 0-16
	// a=ptime:20
	// a=sendrecv
}

func ExampleParseAnswer() {
	offer := media.Offer{Addr: netip.MustParseAddrPort("192.0.2.10:4000"), SessionID: 1}
	answer := "v=0\r\n" +
		"o=trunk 7 7 IN IP4 203.0.113.5\r\n" +
		"s=-\r\n" +
		"c=IN IP4 203.0.113.5\r\n" +
		"t=0 0\r\n" +
		"m=audio 30000 RTP/AVP 8 0 96\r\n" +
		"a=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:96 telephone-event/8000\r\n"
	ans, err := media.ParseAnswer(offer, []byte(answer))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("send to", ans.Addr, "as", ans.Codec.Name, "pt", ans.Codec.PayloadType)
	fmt.Println("telephone-event pt", ans.DTMFPayloadType, "ptime", ans.Ptime)

	rejected := strings.Replace(answer, "m=audio 30000", "m=audio 0", 1)
	_, err = media.ParseAnswer(offer, []byte(rejected))
	fmt.Println(err, errors.Is(err, media.ErrBadSDP))
	// Output:
	// send to 203.0.113.5:30000 as PCMA pt 8
	// telephone-event pt 96 ptime 20ms
	// media: bad sdp: audio stream rejected (port 0) true
}
