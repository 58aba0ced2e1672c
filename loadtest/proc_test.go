package loadtest

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	page := uint64(os.Getpagesize())
	tests := []struct {
		name    string
		in      string
		want    ProcUsage
		wantErr bool
	}{
		{
			"a command with spaces and parentheses",
			"4242 (ivr (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 123456 3000 18446744073709551615",
			ProcUsage{CPU: 3 * time.Second, RSS: 3000 * page}, false,
		},
		{"no command", "4242 S 1", ProcUsage{}, true},
		{"too short", "1 (a) S 1 2 3", ProcUsage{}, true},
		{"not a number", "1 (a) S 1 1 1 0 -1 0 0 0 0 0 x 5 0 0 20 0 1 0 1 1 1 1", ProcUsage{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("parseStat = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestSelfProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	u, err := SelfProc("test").Read()
	if err != nil || u.RSS == 0 {
		t.Fatalf("SelfProc: %+v, %v", u, err)
	}
}
