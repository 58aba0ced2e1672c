package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client speaks the server's HTTP API, as any backend would: start a verification, read it, check a
// code. It is safe for concurrent use.
type Client struct {
	base string
	key  string
	http *http.Client
}

// NewClient returns a client of the API at base ("http://127.0.0.1:8080") that authenticates with key
// (empty: no Authorization header). hc nil means a client with a 30 s timeout that keeps up to
// maxConns idle connections to the server, so a load test reuses connections instead of exhausting
// ephemeral ports.
func NewClient(base, key string, hc *http.Client, maxConns int) *Client {
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = max(maxConns, 100)
		tr.MaxIdleConnsPerHost = max(maxConns, 100)
		hc = &http.Client{Timeout: 30 * time.Second, Transport: tr}
	}
	return &Client{base: strings.TrimRight(base, "/"), key: key, http: hc}
}

// APIError is an error answer of the API: its HTTP status and the error object.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("loadtest: api: %d %s: %s", e.Status, e.Code, e.Message)
}

// APIVerification is the part of a verification, as the API shows it, that the load tester reads.
type APIVerification struct {
	ID     string    `json:"id"`
	To     string    `json:"to"`
	Status string    `json:"status"`
	Calls  []APICall `json:"calls"`
}

// APICall is one call of a verification as the API shows it.
type APICall struct {
	ID               string     `json:"id"`
	Status           string     `json:"status"`
	SIPStatus        int        `json:"sip_status"`
	HangupBy         string     `json:"hangup_by"`
	HangupCause      string     `json:"hangup_cause"`
	QueuedAt         time.Time  `json:"queued_at"`
	DialedAt         *time.Time `json:"dialed_at"`
	RingingAt        *time.Time `json:"ringing_at"`
	AnsweredAt       *time.Time `json:"answered_at"`
	GatePassedAt     *time.Time `json:"gate_passed_at"`
	EndedAt          *time.Time `json:"ended_at"`
	ChallengeDigitOK bool       `json:"challenge_digit_ok"`
	CodePlays        int        `json:"code_plays"`
}

// Terminal reports whether the call's status is an outcome (anything but queued, dialing, ringing,
// answered, or no status at all).
func (c APICall) Terminal() bool {
	switch c.Status {
	case "", "queued", "dialing", "ringing", "answered":
		return false
	}
	return true
}

// Start asks for a verification of number: POST /v1/verifications.
func (c *Client) Start(ctx context.Context, number string) (APIVerification, error) {
	var v APIVerification
	err := c.do(ctx, http.MethodPost, "/v1/verifications", map[string]string{"to": number}, http.StatusCreated, &v)
	return v, err
}

// Get reads a verification: GET /v1/verifications/{id}.
func (c *Client) Get(ctx context.Context, id string) (APIVerification, error) {
	var v APIVerification
	err := c.do(ctx, http.MethodGet, "/v1/verifications/"+id, nil, http.StatusOK, &v)
	return v, err
}

// Check submits a code: POST /v1/verifications/{id}/check. It returns the status the API answers
// ("approved", "pending", …); an error only when the request fails or the API refuses it.
func (c *Client) Check(ctx context.Context, id, code string) (string, error) {
	var out struct {
		Status string `json:"status"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/verifications/"+id+"/check", map[string]string{"code": code}, http.StatusOK, &out)
	return out.Status, err
}

func (c *Client) do(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("loadtest: api: %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("loadtest: api: %s %s: %w", method, path, err)
	}
	if res.StatusCode != want {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return &APIError{Status: res.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("loadtest: api: %s %s: %d with a body that is not the JSON expected: %w", method, path, res.StatusCode, err)
	}
	return nil
}
