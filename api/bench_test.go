package api

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/calls"
	"github.com/voiceotp/voiceotp/dispatch/dispatchtest"
	"github.com/voiceotp/voiceotp/internal/testclock"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/policy"
	"github.com/voiceotp/voiceotp/store/memory"
)

var usAreas = []int{201, 202, 203, 205, 206, 207, 208, 209, 210, 212}

// BenchmarkStart measures POST /v1/verifications on the memory store, with and without the destination
// policy, so that what the policy adds to a start is the difference of the two (BENCHMARKS.md).
func BenchmarkStart(b *testing.B) {
	pol, err := policy.New(policy.Config{Countries: []string{"US", "GB"}, DenyPrefixes: []string{"+1900"}})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts []calls.Option
	}{
		{"policy_off", nil},
		{"policy_on", []calls.Option{calls.WithPolicy(pol)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			clock := testclock.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
			st := memory.New(memory.WithClock(clock.Now))
			svc, err := otp.NewService(st, otp.Config{}, otp.WithClock(clock.Now))
			if err != nil {
				b.Fatal(err)
			}
			q := &dispatchtest.Recorder{}
			c, err := calls.New(svc, q, calls.Config{Logger: slog.New(slog.DiscardHandler)}, append(tc.opts, calls.WithClock(clock.Now))...)
			if err != nil {
				b.Fatal(err)
			}
			srv, err := New(c, st, Config{APIKeys: []string{testKey}})
			if err != nil {
				b.Fatal(err)
			}
			h := srv.Handler()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				// A new valid US number each time; after 100,000 starts they repeat and join their
				// pending verification.
				body := fmt.Sprintf(`{"to":"+1%d555%04d"}`, usAreas[(i/10000)%len(usAreas)], i%10000)
				req := httptest.NewRequest("POST", "/v1/verifications", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+testKey)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
					res, _ := io.ReadAll(rec.Result().Body)
					b.Fatalf("%s: %d %s", body, rec.Code, res)
				}
			}
		})
	}
}
