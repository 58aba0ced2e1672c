package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestCallRefusesBadInputBeforeDialling(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no number", []string{"call", "--trunk", "sip:127.0.0.1:5080", "--code", "482913"}, "exactly one number"},
		{"not e164", []string{"call", "--trunk", "sip:127.0.0.1:5080", "--code", "482913", "5551234567"}, "invalid number"},
		{"header injection", []string{"call", "--trunk", "sip:127.0.0.1:5080", "--code", "482913", "+15551234567\r\nX: y"}, "invalid number"},
		{"no trunk", []string{"call", "--code", "482913", "+15551234567"}, "--trunk is required"},
		{"bad trunk", []string{"call", "--trunk", "sip:127.0.0.1:5080;transport=sctp", "--code", "482913", "+15551234567"}, "sip:"},
		{"no code", []string{"call", "--trunk", "sip:127.0.0.1:5080", "+15551234567"}, "--code is required"},
		{"bad code", []string{"call", "--trunk", "sip:127.0.0.1:5080", "--code", "48291x", "+15551234567"}, "4 to 10 digits"},
		{"bad challenge", []string{"call", "--trunk", "sip:127.0.0.1:5080", "--code", "482913", "--challenge", "12", "+15551234567"}, "challenge"},
		{"bad ports", []string{"call", "--trunk", "sip:127.0.0.1:5080", "--code", "482913", "--rtp-ports", "9-5", "+15551234567"}, "--rtp-ports"},
		{"unknown command", []string{"dial"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), tt.args, &out, &errb); code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", code, errb.String())
			}
			if !strings.Contains(errb.String(), tt.want) {
				t.Errorf("stderr %q does not say %q", errb.String(), tt.want)
			}
			if strings.Contains(errb.String()+out.String(), "482913") {
				t.Error("the code was printed")
			}
		})
	}
}
