package streams

import (
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/dispatch"
)

func TestConfigDefaults(t *testing.T) {
	def := Config{
		Config:   dispatch.Config{MaxConcurrent: 100, CPS: 10, RateKey: "calls", QueueSize: 10000, DrainTimeout: 2 * time.Minute},
		Stream:   "ivr:{calls}",
		Group:    "ivr",
		Consumer: "n1",
		Lease:    30 * time.Second, MaxDeliveries: 5, BlockTime: 2 * time.Second,
	}
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{"Zero", Config{Consumer: "n1"}, def},
		{"Negative", Config{Consumer: "n1", Lease: -1, MaxDeliveries: -1, BlockTime: -1,
			Config: dispatch.Config{MaxConcurrent: -1, CPS: -1, QueueSize: -1, DrainTimeout: -1}}, def},
		{"Stream", Config{Consumer: "n1", Stream: "x:{q}"}, func() Config {
			c := def
			c.Stream = "x:{q}"
			return c
		}()},
		{"BlockTimeAtMostHalfTheLease", Config{Consumer: "n1", Lease: time.Second, BlockTime: 5 * time.Second}, func() Config {
			c := def
			c.Lease, c.BlockTime = time.Second, 500*time.Millisecond
			return c
		}()},
		{"Set", Config{Consumer: "n1", Stream: "s", Group: "g", Lease: time.Minute, MaxDeliveries: 2, BlockTime: time.Second,
			Config: dispatch.Config{MaxConcurrent: 7, CPS: 0.5, RateKey: "k", QueueSize: 3, DrainTimeout: time.Second}},
			Config{Consumer: "n1", Stream: "s", Group: "g", Lease: time.Minute, MaxDeliveries: 2, BlockTime: time.Second,
				Config: dispatch.Config{MaxConcurrent: 7, CPS: 0.5, RateKey: "k", QueueSize: 3, DrainTimeout: time.Second}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in.withDefaults()
			if got.Logger == nil {
				t.Error("Logger is nil")
			}
			got.Logger = nil
			if got != tc.want {
				t.Errorf("withDefaults() =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}
