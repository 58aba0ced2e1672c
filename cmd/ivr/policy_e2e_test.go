package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/internal/sipptest"
)

// Toll fraud: a thousand starts to premium-rate and high-cost numbers, mixed with valid mobiles, on a
// server whose trunk is a real SIPp. The refused ones are refused at the API with the right code and
// never reach the trunk; the valid ones are dialled, once each.
func TestE2EPolicyRefusesHighCostNumbers(t *testing.T) {
	t.Parallel()
	type class struct {
		name, code string
		number     func(i int) string
	}
	classes := []class{
		{"US premium rate", "number_type_not_allowed", func(i int) string { return fmt.Sprintf("+1900555%04d", i) }},
		{"+882 international network", "country_not_allowed", func(i int) string { return fmt.Sprintf("+8823123456%03d", i) }},
		{"+883 international network", "country_not_allowed", func(i int) string { return fmt.Sprintf("+883510012%03d", i) }},
		{"+979 international premium", "country_not_allowed", func(i int) string { return fmt.Sprintf("+979123456%03d", i) }},
		{"+999 unassigned", "invalid_number", func(i int) string { return fmt.Sprintf("+999123456%03d", i) }},
		{"FR mobile, country not listed", "country_not_allowed", func(i int) string { return fmt.Sprintf("+3361234%04d", i) }},
		{"GB personal number", "number_type_not_allowed", func(i int) string { return fmt.Sprintf("+4470123%05d", i) }},
		{"denied prefix", "prefix_denied", func(i int) string { return fmt.Sprintf("+1212555%04d", i) }},
	}
	const perClass = 122 // 8 × 122 = 976 refused
	valid := []string{}
	for i := range 12 {
		valid = append(valid, fmt.Sprintf("+12015550%03d", 100+i)) // US, fixed_line_or_mobile
	}
	for i := range 12 {
		valid = append(valid, fmt.Sprintf("+447400123%03d", 400+i)) // GB, mobile
	}

	trunk := sipptest.Start(t, sipptest.Options{
		Scenario: filepath.Join("testdata", "busy.xml"), Calls: len(valid), TraceMessages: true, Timeout: 60 * time.Second,
	})
	cfg := defaultServeConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.SIP.Listen = "127.0.0.1:0"
	cfg.APIKeys = []string{"e2e-key"}
	cfg.Trunk = "sip:127.0.0.1:" + strconv.Itoa(trunk.Port)
	cfg.Policy.Countries = []string{"US", "GB"}
	cfg.Policy.DenyPrefixes = []string{"+1212555"}
	cfg.Dispatch.CPS = 50
	_, logs, api := runTestApp(t, cfg, "server")

	post := func(number string) (int, string) {
		b, _ := json.Marshal(map[string]string{"to": number})
		req, _ := http.NewRequest("POST", api.base+"/v1/verifications", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+api.key)
		res, err := api.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body struct {
			Error struct{ Code string } `json:"error"`
		}
		json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body.Error.Code
	}
	// Interleave the classes and the valid numbers, as a bot's traffic would be.
	v := 0
	for i := range perClass {
		for _, c := range classes {
			number := c.number(i)
			if status, code := post(number); status != http.StatusBadRequest || code != c.code {
				t.Fatalf("%s %s: %d %s, want 400 %s", c.name, number, status, code, c.code)
			}
		}
		if i%5 == 0 && v < len(valid) {
			if status, code := post(valid[v]); status != http.StatusCreated {
				t.Fatalf("valid %s: %d %s, want 201", valid[v], status, code)
			}
			v++
		}
	}
	for ; v < len(valid); v++ {
		if status, code := post(valid[v]); status != http.StatusCreated {
			t.Fatalf("valid %s: %d %s, want 201", valid[v], status, code)
		}
	}

	// The trunk got exactly one INVITE per valid number, and no other.
	trunk.Wait(t)
	got := trunk.Requests(t, "INVITE")
	slices.Sort(got)
	want := slices.Clone(valid)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("INVITEs reached the trunk for %d numbers, want the %d valid ones:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	// Each refusal is one audit line with its rule, and the number masked.
	if n := strings.Count(logs.String(), `msg="start refused"`); n != perClass*len(classes) {
		t.Errorf("%d audit lines of refused starts, want %d", n, perClass*len(classes))
	}
	if strings.Contains(logs.String(), classes[0].number(7)) {
		t.Error("a refused number appears in clear in the log")
	}
	if strings.Contains(logs.String(), valid[3]) || !strings.Contains(logs.String(), "+1201***0103") {
		t.Error("a dialled number is not masked in the log (log.mask_numbers is on by default)")
	}
}

// A caller ID the operator owns reaches the callee's From (SIPp fails its scenario otherwise);
// another is refused before anything is dialled.
func TestE2ECallerID(t *testing.T) {
	t.Parallel()
	trunk := sipptest.Start(t, sipptest.Options{Scenario: filepath.Join("testdata", "caller_id_busy.xml"), TraceMessages: true})
	cfg := defaultServeConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.SIP.Listen = "127.0.0.1:0"
	cfg.APIKeys = []string{"e2e-key"}
	cfg.Trunk = "sip:127.0.0.1:" + strconv.Itoa(trunk.Port)
	cfg.Policy.Countries = []string{"US"}
	cfg.Policy.CallerIDs = []string{"+15557654321"}
	_, _, api := runTestApp(t, cfg, "server")
	n := &clusterNode{name: "server", api: api}

	status, body, _ := n.post(t, "/v1/verifications", map[string]any{"to": "+12015550123", "caller_id": "+15550000000"})
	if e, _ := body["error"].(map[string]any); status != http.StatusBadRequest || e["code"] != "caller_id_not_allowed" {
		t.Fatalf("a caller ID the operator does not own: %d %v, want 400 caller_id_not_allowed", status, body)
	}
	status, body, _ = n.post(t, "/v1/verifications", map[string]any{"to": "+12015550123", "caller_id": "+15557654321"})
	if status != http.StatusCreated {
		t.Fatalf("an allowed caller ID: %d %v", status, body)
	}
	if call := n.waitCallEnded(t, body["id"].(string)); call.Status != "busy" {
		t.Errorf("call %s, want busy (SIPp's answer once the From matched)", call.Status)
	}
	trunk.Wait(t)
	if got := trunk.Requests(t, "INVITE"); len(got) != 1 || got[0] != "+12015550123" {
		t.Errorf("INVITEs %v, want the one to +12015550123", got)
	}
}
