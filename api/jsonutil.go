package api

import (
	"bytes"
	"io"
	"strings"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// unknownField extracts the field name from encoding/json's
// "json: unknown field \"x\"" error, which has no typed form.
func unknownField(err error) (string, bool) {
	const prefix = "json: unknown field "
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		return "", false
	}
	f := strings.TrimPrefix(msg, prefix)
	if len(f) > 66 {
		f = f[:64] + `…"`
	}
	return f, true
}
