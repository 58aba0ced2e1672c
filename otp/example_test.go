package otp_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/store/memory"
)

func ExampleService() {
	ctx := context.Background()
	now := func() time.Time { return time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC) }
	// The store keeps records by its own clock; give both the same one.
	svc, err := otp.NewService(memory.New(memory.WithClock(now)), otp.Config{}, otp.WithClock(now))
	if err != nil {
		panic(err)
	}

	// The backend asks for a call. A custom code keeps this example's output stable; normally the code
	// is derived from a random secret and only the dialer sees it, through svc.Code.
	v, callID, created, err := svc.Start(ctx, otp.StartRequest{To: "+15551234567", CustomCode: "482913"})
	if err != nil {
		panic(err)
	}
	fmt.Println(v.Status, created, len(v.Calls), v.Calls[0].ID == callID, v.ExpiresAt.Format(time.Kitchen))

	// The user mistypes once, then gets it right; the code is single use.
	v, err = svc.Check(ctx, v.ID, "482931")
	fmt.Println(errors.Is(err, otp.ErrWrongCode), v.Status, v.AttemptsLeft())
	v, err = svc.Check(ctx, v.ID, "482913")
	fmt.Println(err, v.Status)
	_, err = svc.Check(ctx, v.ID, "482913")
	fmt.Println(err)

	// Output:
	// pending true 1 true 3:14PM
	// true pending 4
	// <nil> approved
	// otp: verification is no longer pending
}
