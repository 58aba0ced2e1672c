package policy

import "strings"

// MaskNumber shortens an E.164 number for logs and audit lines: it keeps the '+', a few leading digits
// (the calling code and the start of the national number) and the last few digits, and replaces the
// rest with one '*' per digit, always at least three:
//
//	digits  kept (head+tail)  example
//	11..15  4 + 4             +15551234567    → +1555***4567
//	10      3 + 4             +4930123456     → +493***3456
//	9       2 + 4             +331234567      → +33***4567
//	≤ 8     at most half,     +6834002        → +68****2    (7 digits: 2 + 1)
//	        head ≥ tail       +12345678       → +12****78   (8 digits: 2 + 2)
//
// Numbers of 8 digits or fewer never show more than half of their digits, and never fewer than three
// stars (4 digits: 1 + 0, 3 or fewer: all stars). Anything that is not '+' followed by 1 to 15 ASCII
// digits (including the empty string) becomes "***", so nothing of it reaches a log.
func MaskNumber(number string) string {
	n := len(number) - 1
	if n < 1 || n > maxDigits || number[0] != '+' || !allDigits(number[1:]) {
		return "***"
	}
	head, tail := maskSplit(n)
	var b strings.Builder
	b.Grow(1 + n)
	b.WriteString(number[:1+head])
	for range n - head - tail {
		b.WriteByte('*')
	}
	b.WriteString(number[1+n-tail:])
	return b.String()
}

// maskSplit returns how many leading and trailing digits MaskNumber keeps of a number of n digits.
func maskSplit(n int) (head, tail int) {
	const minStars = 3
	if n > 8 {
		return min(4, n-4-minStars), 4
	}
	visible := max(0, min(n/2, n-minStars))
	tail = visible / 2
	return visible - tail, tail
}

// allDigits reports whether s is made of ASCII digits only.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
