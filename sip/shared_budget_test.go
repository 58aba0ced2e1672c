package sip

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeBudget answers TakeToken from a script and records the keys asked.
type fakeBudget struct {
	mu      sync.Mutex
	answers []struct {
		ok   bool
		wait time.Duration
		err  error
	}
	keys []string
}

func (b *fakeBudget) TakeToken(_ context.Context, key string, rate float64, burst int) (bool, time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.keys = append(b.keys, key)
	a := b.answers[0]
	if len(b.answers) > 1 {
		b.answers = b.answers[1:]
	}
	return a.ok, a.wait, a.err
}

func TestSharedCPSBudget(t *testing.T) {
	ua, err := NewUA(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	trunks, err := NewTrunks(ua, []TrunkConfig{
		{Name: "limited", URI: "sip:127.0.0.1:5999", MaxCPS: 2},
		{Name: "free", URI: "sip:127.0.0.1:5998"},
	})
	if err != nil {
		t.Fatal(err)
	}
	type answer = struct {
		ok   bool
		wait time.Duration
		err  error
	}
	tests := []struct {
		name    string
		answers []answer
		want    bool
		asks    int
	}{
		{"token free", []answer{{ok: true}}, true, 1},
		{"short wait then a token", []answer{{wait: 20 * time.Millisecond}, {ok: true}}, true, 2},
		{"wait too long: skip the trunk", []answer{{wait: 5 * time.Second}}, false, 1},
		{"budget unreachable: skip the trunk", []answer{{err: errors.New("redis down")}}, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &fakeBudget{answers: tt.answers}
			trunks.ShareCPS(b)
			if got := trunks.takeShared(context.Background(), trunks.trunks[0]); got != tt.want {
				t.Errorf("takeShared = %v, want %v", got, tt.want)
			}
			if len(b.keys) != tt.asks || b.keys[0] != "trunk:limited" {
				t.Errorf("asked %v, want %d asks for trunk:limited", b.keys, tt.asks)
			}
			// A trunk without MaxCPS never asks.
			if !trunks.takeShared(context.Background(), trunks.trunks[1]) || len(b.keys) != tt.asks {
				t.Error("a trunk without max_cps consulted the shared budget")
			}
		})
	}
}
