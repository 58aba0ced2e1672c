package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// apiError is the body of every error response:
// {"error":{"code":"invalid_number","message":"..."}}.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"could not encode the response"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var e apiError
	e.Error.Code = code
	e.Error.Message = msg
	writeJSON(w, status, e)
}

// requestError is a client error found while reading a request.
type requestError struct {
	status int
	code   string
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(code, format string, args ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, args...)}
}

// readBody reads at most limit bytes; a larger body is refused whole.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *requestError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &requestError{status: http.StatusRequestEntityTooLarge, code: "body_too_large",
				msg: fmt.Sprintf("the request body is larger than %d bytes", limit)}
		}
		return nil, badRequest("invalid_body", "the request body could not be read")
	}
	return body, nil
}

// decodeStrict decodes exactly one JSON object into v, refusing unknown
// fields and trailing data. Messages name the field but never echo values.
func decodeStrict(body []byte, v any) *requestError {
	if len(body) == 0 {
		return badRequest("invalid_body", "a JSON body is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr):
			return badRequest("invalid_body", "field %q has the wrong type", typeErr.Field)
		case errors.As(err, &syntaxErr):
			return badRequest("invalid_body", "the body is not valid JSON (at byte %d)", syntaxErr.Offset)
		default:
			if f, ok := unknownField(err); ok {
				return badRequest("unknown_field", "unknown field %s", f)
			}
			return badRequest("invalid_body", "the body is not a valid JSON object")
		}
	}
	if dec.More() {
		return badRequest("invalid_body", "the body must hold exactly one JSON object")
	}
	return nil
}

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
