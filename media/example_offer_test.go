package media_test

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/voiceotp/voiceotp/media"
)

// A callee answers an offer that prefers PCMA and sends telephone-event on 96: it picks PCMA from its own
// preference and echoes the offer's payload types.
func ExampleRemoteOffer_Negotiate() {
	body := "v=0\r\no=- 7 7 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
		"m=audio 4000 RTP/AVP 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\n"
	offer, err := media.ParseOffer([]byte(body))
	if err != nil {
		fmt.Println(err)
		return
	}
	session, err := offer.Negotiate([]media.Codec{media.PCMA, media.PCMU})
	if err != nil {
		fmt.Println(err)
		return
	}
	answer, err := media.MarshalAnswer(netip.MustParseAddrPort("192.0.2.20:5000"), session, 1, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("send to", session.Addr, session.Codec.Name, "events on", session.DTMFPayloadType)
	fmt.Print(strings.ReplaceAll(string(answer), "\r\n", "\n"))
	// Output:
	// send to 192.0.2.1:4000 PCMA events on 96
	// v=0
	// o=- 1 1 IN IP4 192.0.2.20
	// s=-
	// c=IN IP4 192.0.2.20
	// t=0 0
	// m=audio 5000 RTP/AVP 8 96
	// a=rtpmap:8 PCMA/8000
	// a=rtpmap:96 telephone-event/8000
	// a=fmtp:96 0-16
	// a=ptime:20
	// a=sendrecv
}
