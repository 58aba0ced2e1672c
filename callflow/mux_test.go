package callflow

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"github.com/voiceotp/voiceotp/media"
)

// TestDenseMediaCalls runs calls side by side on one Mux (the dense media mode): every call's RTP
// shares two lane sockets. Half the callees press the right key and half a wrong one, so a stream
// handed to the wrong call would change an outcome; the media counters must add up per call.
func TestDenseMediaCalls(t *testing.T) {
	t.Parallel()
	mux, err := media.NewMux(media.MuxConfig{IP: netip.MustParseAddr("127.0.0.1"), Lanes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer mux.Close()
	cfg := fastConfig(Challenge{Mode: ChallengeFixed, Digit: '4'})
	cfg.MaxRepeats = -1
	cfg.CodePlays = 1

	const calls = 12
	var wg sync.WaitGroup
	results := make([]*Result, calls)
	for i := range calls {
		key := byte('4')
		if i%2 == 1 {
			key = '9'
		}
		phone := newPhoneMedia(t, 101, pressOnPacket(5, key))
		d := newFakeDialer(answerSDP(phone.port(), "0 101"), nil)
		r, err := newRunner(d, catalog(t), cfg, netip.MustParseAddr("127.0.0.1"), WithMux(mux))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runUnit(t, r, context.Background())
		}()
	}
	wg.Wait()
	for i, res := range results {
		want := Delivered
		if i%2 == 1 {
			want = NoInput
		}
		if res.Outcome != want {
			t.Errorf("call %d: outcome %s, want %s (%s)", i, res.Outcome, want, res.Error)
			continue
		}
		m := res.Media
		if m == nil || m.PacketsSent == 0 || m.PacketsRecv == 0 || m.DroppedSource != 0 || m.Malformed != 0 {
			t.Errorf("call %d: media %+v", i, m)
		}
		if m != nil && netip.MustParseAddrPort(m.LocalAddr).Addr() != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("call %d: local address %s", i, m.LocalAddr)
		}
	}
	if st := mux.Stats(); st.Senders != 0 || st.Receivers != 0 || st.Unmatched != 0 || st.WriteCalls >= st.Packets {
		t.Errorf("mux after the calls: %+v", st)
	}
}
