package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/voiceotp/voiceotp/loadtest"
	"github.com/voiceotp/voiceotp/otp"
	"github.com/voiceotp/voiceotp/store/redis/redistest"
)

// Several nodes on one Redis (a real redis-server, started by the test):
// the verification contract holds across nodes, parallel starts place one
// call, and a Redis that goes away and comes back is survived. The nodes are
// whole servers (newApp) in this process; cluster_kill_test.go runs them as
// processes and kills one.

// clusterRedisURL is the redis.url of s, with short timeouts so that a
// stopped server turns into errors within a second.
func clusterRedisURL(s *redistest.Server) string {
	return "redis://" + s.Addr() + "/0?dial_timeout=500ms&read_timeout=500ms&write_timeout=500ms&max_retries=1"
}

// clusterNode is one server of a cluster test.
type clusterNode struct {
	name string
	app  *app
	api  *apiClient
	logs *syncBuf
}

// newClusterPhone starts the phone every node's trunk points at; planFor
// chooses each call's plan from its number.
func newClusterPhone(t *testing.T, planFor func(string) loadtest.Plan) *loadtest.Phone {
	t.Helper()
	cat, err := e2eCatalog()
	if err != nil {
		t.Fatal(err)
	}
	phone, err := loadtest.NewPhone(loadtest.Config{ListenAddr: "127.0.0.1:0", Catalog: cat, PlanFor: planFor, NoAudio: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { phone.Close() })
	return phone
}

// busyPhone rings for a moment, then answers 486 Busy: the call is placed
// and counted by the phone, and ends without talk.
func busyPhone(string) loadtest.Plan {
	return loadtest.Plan{Behaviour: loadtest.Busy, AnswerDelay: 2 * time.Second}
}

// startClusterNode runs a server named name on the Redis at url with phone as its trunk.
func startClusterNode(t *testing.T, url, name string, phone *loadtest.Phone, edit func(*serveConfig)) *clusterNode {
	t.Helper()
	cfg := testServeConfig(phone)
	cfg.Redis.URL = url
	cfg.Redis.Node = name
	cfg.Redis.Lease = 3 * time.Second
	cfg.Dispatch.DrainTimeout = 2 * time.Second
	if edit != nil {
		edit(&cfg)
	}
	a, logs, api := runTestApp(t, cfg, name)
	return &clusterNode{name: name, app: a, logs: logs, api: api}
}

// post sends a JSON request and returns the status, the decoded body and the headers.
func (n *clusterNode) post(t *testing.T, path string, body any) (int, map[string]any, http.Header) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", n.api.base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+n.api.key)
	res, err := n.api.http.Do(req)
	if err != nil {
		t.Errorf("%s POST %s: %v", n.name, path, err)
		return 0, nil, nil
	}
	defer res.Body.Close()
	var m map[string]any
	json.NewDecoder(res.Body).Decode(&m)
	return res.StatusCode, m, res.Header
}

// check posts a check and returns the status and the verification status or error code.
func (n *clusterNode) check(t *testing.T, id, code string) (int, string) {
	t.Helper()
	status, m, _ := n.post(t, "/v1/verifications/"+id+"/check", map[string]string{"code": code})
	if s, ok := m["status"].(string); ok {
		return status, s
	}
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return status, c
}

func (n *clusterNode) get(t *testing.T, id string) (int, verification) {
	t.Helper()
	var v verification
	status, err := n.api.do(context.Background(), "GET", "/v1/verifications/"+id, nil, &v)
	if err != nil && status == 0 {
		t.Fatalf("%s GET: %v", n.name, err)
	}
	return status, v
}

// waitCallEnded waits until the verification's last call has ended and
// returns its record. It polls the node's API for the record's status:
// nothing signals the end of a call record to the test.
func (n *clusterNode) waitCallEnded(t *testing.T, id string) otp.Call {
	t.Helper()
	var call otp.Call
	eventually(t, 60*time.Second, "the call of "+id+" to end, read on "+n.name, func() error {
		status, v := n.get(t, id)
		switch {
		case status != 200:
			return fmt.Errorf("GET answered %d", status)
		case len(v.Calls) == 0:
			return errors.New("no call recorded")
		}
		if call = v.Calls[len(v.Calls)-1]; !call.Status.Terminal() {
			return fmt.Errorf("the call is %s", call.Status)
		}
		return nil
	})
	return call
}

// Checks sent to two nodes at once are counted as if there were one: the
// right code approves exactly once, wrong codes lock at otp.max_checks.
func TestClusterCheckContract(t *testing.T) {
	t.Parallel()
	rs := redistest.New(t)
	phone := newClusterPhone(t, busyPhone)
	url := clusterRedisURL(rs)
	nodes := []*clusterNode{startClusterNode(t, url, "node-a", phone, nil), startClusterNode(t, url, "node-b", phone, nil)}

	t.Run("RightCodeApprovesOnce", func(t *testing.T) {
		status, v, _ := nodes[0].post(t, "/v1/verifications", map[string]any{"to": "+15552000001", "custom_code": "482913"})
		if status != 201 {
			t.Fatalf("start: %d %v", status, v)
		}
		id := v["id"].(string)
		const n = 50
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[string]int{}
		for i := range n {
			wg.Go(func() {
				status, s := nodes[i%2].check(t, id, "482913")
				mu.Lock()
				defer mu.Unlock()
				got[fmt.Sprintf("%d %s", status, s)]++
			})
		}
		wg.Wait()
		if got["200 approved"] != 1 || got["410 approved"] != n-1 {
			t.Errorf("%d concurrent right checks over two nodes: %v; want 1 × 200 approved, %d × 410 approved", n, got, n-1)
		}
	})

	t.Run("WrongCodesLockAtFive", func(t *testing.T) {
		status, v, _ := nodes[1].post(t, "/v1/verifications", map[string]any{"to": "+15552000002", "custom_code": "482913"})
		if status != 201 {
			t.Fatalf("start: %d %v", status, v)
		}
		id := v["id"].(string)
		const n = 12
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[string]int{}
		for i := range n {
			wg.Go(func() {
				status, s := nodes[i%2].check(t, id, "111111")
				mu.Lock()
				defer mu.Unlock()
				got[fmt.Sprintf("%d %s", status, s)]++
			})
		}
		wg.Wait()
		// Four wrong codes leave it pending, the fifth locks it, the rest find it locked.
		if got["200 pending"] != 4 || got["429 max_attempts_reached"] != n-4 {
			t.Errorf("%d concurrent wrong checks over two nodes: %v; want 4 × 200 pending, %d × 429", n, got, n-4)
		}
		for _, node := range nodes {
			if status, s := node.check(t, id, "482913"); status != 429 {
				t.Errorf("right code on %s after the lock: %d %s, want 429", node.name, status, s)
			}
		}
	})
}

// One Idempotency-Key sent to both nodes at once runs once: one 201, the
// others the replay of it or 409 while it runs, and one verification.
func TestClusterIdempotencyKey(t *testing.T) {
	t.Parallel()
	rs := redistest.New(t)
	phone := newClusterPhone(t, busyPhone)
	url := clusterRedisURL(rs)
	nodes := []*clusterNode{startClusterNode(t, url, "node-a", phone, nil), startClusterNode(t, url, "node-b", phone, nil)}
	const n = 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]int{}
	ids := map[string]bool{}
	for i := range n {
		wg.Go(func() {
			b, _ := json.Marshal(map[string]any{"to": "+15552000004"})
			req, _ := http.NewRequest("POST", nodes[i%2].api.base+"/v1/verifications", bytes.NewReader(b))
			req.Header.Set("Authorization", "Bearer "+nodes[i%2].api.key)
			req.Header.Set("Idempotency-Key", "order-7")
			res, err := nodes[i%2].api.http.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			var m map[string]any
			json.NewDecoder(res.Body).Decode(&m)
			mu.Lock()
			defer mu.Unlock()
			got[fmt.Sprintf("%d replayed=%s", res.StatusCode, res.Header.Get("Idempotent-Replayed"))]++
			if id, ok := m["id"].(string); ok {
				ids[id] = true
			}
		})
	}
	wg.Wait()
	if got["201 replayed="] != 1 || got["201 replayed=true"]+got["409 replayed="] != n-1 || len(ids) != 1 {
		t.Errorf("%d starts with one key over two nodes: %v, %d verifications; want one 201 run, the rest replayed or 409, one verification", n, got, len(ids))
	}
}

// Twenty starts for one number at once, over two nodes, place one call:
// ten pass the sends limit, the first creates the verification, the other
// nine join it and its call in progress.
func TestClusterParallelStartsPlaceOneCall(t *testing.T) {
	t.Parallel()
	rs := redistest.New(t)
	phone := newClusterPhone(t, busyPhone)
	url := clusterRedisURL(rs)
	nodes := []*clusterNode{startClusterNode(t, url, "node-a", phone, nil), startClusterNode(t, url, "node-b", phone, nil)}
	const number, n = "+15552000003", 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[int]int{}
	ids := map[string]bool{}
	for i := range n {
		wg.Go(func() {
			status, v, h := nodes[i%2].post(t, "/v1/verifications", map[string]any{"to": number})
			mu.Lock()
			defer mu.Unlock()
			got[status]++
			if id, ok := v["id"].(string); ok {
				ids[id] = true
			}
			if status == 429 && h.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		})
	}
	wg.Wait()
	if got[201] != 1 || got[200] != 9 || got[429] != 10 || len(ids) != 1 {
		t.Errorf("%d parallel starts: statuses %v, %d verifications; want 1 × 201, 9 × 200, 10 × 429 (limits.sends_per_number), 1", n, got, len(ids))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := phone.WaitReport(ctx, number); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if r, err := phone.WaitReport(ctx, number); err == nil {
		t.Errorf("a second INVITE reached the phone (%s)", r.CallID)
	}
	for id := range ids {
		if _, v := nodes[0].get(t, id); len(v.Calls) != 1 {
			t.Errorf("%d calls recorded, want 1", len(v.Calls))
		}
	}
}

// Redis stopped: starts answer 503 and dial nothing, checks and reads
// answer 503 and approve nothing. Redis back (empty, as after a crash
// without persistence): both nodes serve again without a restart.
func TestClusterRedisLostAndBack(t *testing.T) {
	t.Parallel()
	rs := redistest.New(t)
	phone := newClusterPhone(t, busyPhone)
	url := clusterRedisURL(rs)
	nodes := []*clusterNode{startClusterNode(t, url, "node-a", phone, nil), startClusterNode(t, url, "node-b", phone, nil)}

	status, v, _ := nodes[0].post(t, "/v1/verifications", map[string]any{"to": "+15552000010", "custom_code": "482913"})
	if status != 201 {
		t.Fatalf("start: %d %v", status, v)
	}
	id := v["id"].(string)
	nodes[1].waitCallEnded(t, id)

	rs.Kill()
	for i, n := range nodes {
		number := fmt.Sprintf("+1555200002%d", i)
		if status, m, _ := n.post(t, "/v1/verifications", map[string]any{"to": number}); status != 503 {
			t.Errorf("%s: start without Redis: %d %v, want 503", n.name, status, m)
		}
		if status, s := n.check(t, id, "482913"); status != 503 {
			t.Errorf("%s: right code without Redis: %d %s, want 503", n.name, status, s)
		}
		if status, _ := n.get(t, id); status != 503 {
			t.Errorf("%s: GET without Redis: %d, want 503", n.name, status)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if r, err := phone.WaitReport(ctx, "+15552000020"); err == nil {
		t.Errorf("a start refused with 503 placed a call (%s)", r.CallID)
	}
	cancel()

	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		number := fmt.Sprintf("+1555200003%d", i)
		// Poll the start's HTTP status: nothing else tells when the node's
		// Redis client has connected again. A refused start dials nothing.
		var id string
		eventually(t, 20*time.Second, n.name+" to answer a start with 201 after Redis came back", func() error {
			status, m, _ := n.post(t, "/v1/verifications", map[string]any{"to": number, "custom_code": "482913"})
			if status != 201 {
				return fmt.Errorf("%d %v", status, m)
			}
			id = m["id"].(string)
			return nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := phone.WaitReport(ctx, number); err != nil {
			t.Errorf("%s: the call after recovery: %v", n.name, err)
		}
		cancel()
		if status, s := nodes[1-i].check(t, id, "482913"); status != 200 || s != "approved" {
			t.Errorf("check on the other node after recovery: %d %s", status, s)
		}
	}
}
