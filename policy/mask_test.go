package policy

import (
	"strings"
	"testing"
)

func TestMaskNumber(t *testing.T) {
	tests := []struct{ number, want string }{
		{"+123456789012345", "+1234*******2345"}, // 15 digits
		{"+447400123456", "+4474****3456"},       // 12
		{"+15551234567", "+1555***4567"},         // 11: the example
		{"+4930123456", "+493***3456"},           // 10
		{"+331234567", "+33***4567"},             // 9
		{"+12345678", "+12****78"},               // 8: half
		{"+6834002", "+68****2"},                 // 7
		{"+123456", "+12***6"},                   // 6
		{"+12345", "+1***5"},                     // 5
		{"+1234", "+1***"},                       // 4
		{"+123", "+***"},                         // 3
		{"+12", "+**"},
		{"+1", "+*"},
		{"", "***"},
		{"+", "***"},
		{"15551234567", "***"},
		{"+1555123456x", "***"},
		{"+1 555 123 4567", "***"},
		{"+1234567890123456", "***"}, // 16 digits: not E.164
		{"+１２３４５６７８９", "***"},
	}
	for _, tt := range tests {
		t.Run(tt.number, func(t *testing.T) {
			if got := MaskNumber(tt.number); got != tt.want {
				t.Errorf("MaskNumber(%q) = %q, want %q", tt.number, got, tt.want)
			}
		})
	}
}

// FuzzMaskNumber: the mask keeps the number's length, shows its digits only where they are, at least
// three stars from 4 digits on, and never more than half of a number of 8 digits or fewer.
func FuzzMaskNumber(f *testing.F) {
	for _, s := range []string{"+15551234567", "+6834002", "+1", "", "+", "+1234567890123456", "abc", "+12\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, number string) {
		got := MaskNumber(number)
		if !validE164Digits(number) {
			if got != "***" {
				t.Fatalf("MaskNumber(%q) = %q, want ***", number, got)
			}
			return
		}
		if len(got) != len(number) || got[0] != '+' {
			t.Fatalf("MaskNumber(%q) = %q: length or '+' changed", number, got)
		}
		n, shown := len(number)-1, 0
		for i := 1; i < len(got); i++ {
			switch got[i] {
			case '*':
			case number[i]:
				shown++
			default:
				t.Fatalf("MaskNumber(%q) = %q: digit %d changed", number, got, i)
			}
		}
		if stars := strings.Count(got, "*"); stars < min(3, n) {
			t.Fatalf("MaskNumber(%q) = %q: %d stars", number, got, stars)
		}
		if n <= 8 && shown > n/2 {
			t.Fatalf("MaskNumber(%q) = %q shows %d of %d digits", number, got, shown, n)
		}
	})
}

// validE164Digits reports whether s is '+' and 1 to 15 ASCII digits, written apart from MaskNumber.
func validE164Digits(s string) bool {
	if len(s) < 2 || len(s) > 16 || s[0] != '+' {
		return false
	}
	return strings.Trim(s[1:], "0123456789") == ""
}

func BenchmarkMaskNumber(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		MaskNumber("+15551234567")
	}
}
