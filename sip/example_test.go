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
	t, _ = sip.ParseTrunk("sip:192.0.2.10;transport=tcp")
	fmt.Println(t, t.Transport)
	t, _ = sip.ParseTrunk("sips:sbc.example")
	uri, _ = t.RequestURI("+442071838750")
	fmt.Println(t, t.Transport, uri)
	_, err = sip.ParseTrunk("sip:192.0.2.10;transport=sctp")
	fmt.Println(err)
	// Output:
	// sip:192.0.2.10:5060 <nil>
	// sip:+442071838750@192.0.2.10:5060 <nil>
	// sip:192.0.2.10:5060;transport=tcp tcp
	// sips:sbc.example:5061 tls sip:+442071838750@sbc.example:5061;transport=tls
	// sip: invalid trunk "sip:192.0.2.10;transport=sctp": transport must be udp, tcp or tls
}

func ExampleRewrite_Apply() {
	national := sip.Rewrite{CountryCode: "44", NationalPrefix: "0"}
	fmt.Println(national.Apply("+442071838750"))
	fmt.Println(national.Apply("+15551234567"))
	fmt.Println(sip.Rewrite{StripPlus: true, Prefix: "9"}.Apply("+15551234567"))
	// Output:
	// 02071838750
	// +15551234567
	// 915551234567
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

func ExampleTrunkConfig_Validate() {
	cfg := sip.TrunkConfig{Name: "carrier-a", URI: "sip:carrier.example;transport=sctp"}
	fmt.Println(cfg.Validate())
	cfg = sip.TrunkConfig{Name: "carrier-a", URI: "sips:sbc.carrier.example", Username: "otp", Password: "secret", Register: true}
	fmt.Println(cfg.Validate())
	cfg.Privacy = "header"
	fmt.Println(cfg.Validate())
	// Output:
	// trunk "carrier-a": uri: sip: invalid trunk "sip:carrier.example;transport=sctp": transport must be udp, tcp or tls
	// <nil>
	// trunk "carrier-a": privacy: "header": "", "none" or "id"
}

// Two trunks: a registering TLS trunk tried first, an IP-authenticated
// backup over UDP. Run keeps the registration and the probes while the
// server runs; Dial fails over to the backup if the first trunk fails.
func ExampleTrunks() {
	ua, err := sip.NewUA(sip.Config{ListenAddr: "127.0.0.1:0", FromUser: "+15550001111"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ua.Close()
	trunks, err := sip.NewTrunks(ua, []sip.TrunkConfig{{
		Name: "primary", URI: "sips:sbc.carrier.example", Username: "otp", Password: "secret",
		Register: true, OptionsInterval: 30 * time.Second, Priority: 1,
		Rewrite: sip.Rewrite{StripPlus: true}, MaxChannels: 30, MaxCPS: 5,
	}, {
		Name: "backup", URI: "sip:192.0.2.20:5060", OptionsInterval: 30 * time.Second, Priority: 2,
		PAssertedIdentity: "sip:+15550001111@backup.example",
	}})
	if err != nil {
		fmt.Println(err) // names the trunk and the field
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- trunks.Run(ctx) }()
	defer func() { stop(); <-done }() // un-registers

	call, err := trunks.Dial(ctx, sip.DialRequest{
		Number: "+15551234567", Offer: []byte("v=0\r\n..."), RingTimeout: 30 * time.Second,
		OnAttempt: func(a sip.Attempt) { fmt.Println("trunk", a.Trunk, "failed:", a.Err, "failed over:", a.FailedOver) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("answered via", call.Trunk().Name)
	_ = call.Hangup(ctx)
}

func ExampleValidateCallerID() {
	fmt.Println(sip.ValidateCallerID(""))
	fmt.Println(sip.ValidateCallerID("+15557654321"))
	err := sip.ValidateCallerID("+15557654321\r\nX-Injected: 1")
	fmt.Println(errors.Is(err, sip.ErrInvalidNumber))
	fmt.Println(err)
	// Output:
	// <nil>
	// <nil>
	// true
	// sip: invalid number: caller ID "+15557654321\r\nX-Injected: 1" is not '+' followed by 8 to 15 digits, the first not 0
}
