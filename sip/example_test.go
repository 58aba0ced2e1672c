package sip_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/voiceotp/voiceotp/sip"
)

func ExampleValidateE164() {
	fmt.Println(sip.ValidateE164("+15551234567"))
	err := sip.ValidateE164("+15551234567\r\nX-Injected: 1")
	fmt.Println(errors.Is(err, sip.ErrInvalidNumber))
	fmt.Println(err)
	// Output:
	// <nil>
	// true
	// sip: invalid number: "+15551234567\r\nX-Injected: 1" is not '+' followed by 8 to 15 digits
}

func ExampleParseTrunk() {
	t, err := sip.ParseTrunk("sip:192.0.2.10;transport=udp")
	fmt.Println(t, err)
	uri, err := t.RequestURI("+442071838750")
	fmt.Println(uri, err)
	_, err = sip.ParseTrunk("sip:192.0.2.10;transport=tcp")
	fmt.Println(err)
	// Output:
	// sip:192.0.2.10:5060 <nil>
	// sip:+442071838750@192.0.2.10:5060 <nil>
	// sip: invalid trunk "sip:192.0.2.10;transport=tcp": only transport=udp is supported
}

func ExampleError() {
	var err error = &sip.Error{Status: 486, Reason: "Busy Here", Kind: sip.KindForStatus(486)}
	fmt.Println(err)
	fmt.Println(errors.Is(err, sip.ErrBusy))
	// Output:
	// sip: busy (486 Busy Here)
	// true
}

// A whole call: dial, wait for the callee or a deadline, hang up.
func ExampleUA_Dial() {
	ua, err := sip.NewUA(sip.Config{ListenAddr: "127.0.0.1:0", FromUser: "+15550001111"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ua.Close()
	trunk, _ := sip.ParseTrunk("sip:127.0.0.1:5080")
	call, err := ua.Dial(context.Background(), sip.DialRequest{
		Trunk:       trunk,
		Number:      "+15551234567",
		Offer:       []byte("v=0\r\n..."),
		RingTimeout: 30 * time.Second,
		OnProgress:  func(p sip.Progress) { fmt.Println("progress", p.Status) },
	})
	var se *sip.Error
	switch {
	case errors.Is(err, sip.ErrBusy), errors.Is(err, sip.ErrNoAnswer):
		fmt.Println("try later:", err)
		return
	case errors.As(err, &se):
		fmt.Println("failed with", se.Status)
		return
	case err != nil:
		fmt.Println(err)
		return
	}
	select {
	case <-call.Done(): // callee hung up
	case <-time.After(time.Minute):
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = call.Hangup(ctx)
	}
}
