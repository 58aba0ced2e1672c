package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/loadtest"
	"github.com/voiceotp/voiceotp/store/redis/redistest"
)

// The conversion guard: a flood to one number range whose codes are never checked pauses that range
// once min_volume of its verifications have ended unapproved (here they expire after 2 s); other ranges
// keep working; the signed webhook and the metric appear; the operator's resume lifts the pause. On two
// Redis nodes the pause made by one holds on the other.
func TestE2EConversionGuard(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			phone := newClusterPhone(t, busyPhone)
			hooks := newHookRecorder(t)
			edit := func(c *serveConfig) {
				c.OTP.TTL = 2 * time.Second
				c.Policy.Guard.MinConversion = 0.5
				c.Policy.Guard.MinVolume = 5
				c.Policy.Guard.Window = time.Hour
				c.Policy.Guard.Pause = time.Hour
				c.Policy.Guard.PrefixLength = 6
				c.Policy.Guard.WebhookURL = hooks.url()
				c.Webhook.Secret = string(hookSecret)
				c.Webhook.AllowHTTP = true
				c.Webhook.AllowPrivate = true
			}
			var nodes []*clusterNode
			if backend == "memory" {
				nodes = []*clusterNode{startClusterNodeOn(t, "", "local", phone, edit)}
			} else {
				rs := redistest.New(t)
				nodes = []*clusterNode{
					startClusterNodeOn(t, clusterRedisURL(rs), "a", phone, edit),
					startClusterNodeOn(t, clusterRedisURL(rs), "b", phone, edit),
				}
			}
			start := func(n *clusterNode, number string) (int, string) {
				t.Helper()
				status, body, _ := n.post(t, "/v1/verifications", map[string]any{"to": number})
				e, _ := body["error"].(map[string]any)
				code, _ := e["code"].(string)
				return status, code
			}
			// The flood: five numbers of +155512, started on alternate nodes, never checked.
			for i := range 5 {
				if status, code := start(nodes[i%len(nodes)], fmt.Sprintf("+15551200%03d", i)); status != http.StatusCreated {
					t.Fatalf("flood start %d: %d %s", i, status, code)
				}
			}
			// Their verifications expire after 2 s; the fifth unapproved end pauses the range, on every node.
			for _, n := range nodes {
				probe := 0
				// The expiries signal nothing to the test: this polls with a start.
				eventually(t, 20*time.Second, "the range to be paused on "+n.name, func() error {
					probe++ // a new number each time: a number's own limits would answer first
					if status, code := start(n, fmt.Sprintf("+1555129%05d", probe)); status != http.StatusTooManyRequests || code != "prefix_paused" {
						return fmt.Errorf("a start answered %d %s", status, code)
					}
					return nil
				})
			}
			if status, code := start(nodes[len(nodes)-1], "+15553400001"); status != http.StatusCreated {
				t.Errorf("another range: %d %s, want 201", status, code)
			}
			hooks.waitFor(t, "policy.prefix_paused")
			hooks.checkSigned(t)
			pauses := 0.0
			for _, n := range nodes {
				pauses += metricValue(t, n.metrics(t), "ivr_guard_pauses_total")
			}
			if pauses != 1 {
				t.Errorf("ivr_guard_pauses_total summed over the nodes = %v, want 1", pauses)
			}
			// The operator resumes it on one node; every node lets the range through again.
			if status, body, _ := nodes[0].post(t, "/v1/policy/pauses/%2B155512/resume", nil); status != http.StatusOK {
				t.Fatalf("resume: %d %v", status, body)
			}
			if status, _, _ := nodes[0].post(t, "/v1/policy/pauses/%2B155512/resume", nil); status != http.StatusNotFound {
				t.Errorf("resuming twice: %d, want 404 not_paused", status)
			}
			if status, code := start(nodes[len(nodes)-1], "+15551208888"); status != http.StatusCreated {
				t.Errorf("after the resume: %d %s, want 201", status, code)
			}
		})
	}
}

// startClusterNodeOn runs a server named name with phone as its trunk, on the Redis at url or, when
// url is empty, on the memory store.
func startClusterNodeOn(t *testing.T, url, name string, phone *loadtest.Phone, edit func(*serveConfig)) *clusterNode {
	t.Helper()
	cfg := defaultServeConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.SIP.Listen = "127.0.0.1:0"
	cfg.Trunk = "sip:" + phone.Addr().String()
	cfg.APIKeys = []string{"e2e-key"}
	cfg.Policy.AllowPrefixes = []string{"+1555"}
	cfg.Dispatch.CPS = 50
	cfg.Dispatch.DrainTimeout = 2 * time.Second
	if url != "" {
		cfg.Redis.URL, cfg.Redis.Node, cfg.Redis.Lease = url, name, 3*time.Second
	}
	edit(&cfg)
	a, logs, api := runTestApp(t, cfg, name)
	return &clusterNode{name: name, app: a, api: api, logs: logs}
}

// metrics returns the node's /metrics body.
func (n *clusterNode) metrics(t *testing.T) string {
	t.Helper()
	req, _ := http.NewRequest("GET", n.api.base+"/metrics", nil)
	res, err := n.api.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return strings.TrimSpace(string(b)) + "\n"
}
