package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsflow/opsflow/api"
	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/client"
)

// BenchmarkApprovalDecision measures, on the dev stack (its Temporal on a
// SQLite file, the API and workers in one process, as `go tool task dev`
// runs it), a decision sent through the API until the ticket's workflow
// is unblocked: the API's answer (the vote counted, from the workflow's
// update) and the workflow's completion (its final state recorded), over
// 1,000 tickets decided one after another. Target (issue 5): p99 <= 150 ms.
//
//	go tool task bench:approvals   (BENCH_TICKETS=n for fewer)
func BenchmarkApprovalDecision(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("BENCH_TICKETS")); err == nil && v > 0 {
		n = v
	}
	s := newStack(b)
	s.start()
	ctx := context.Background()

	// An approver with a token: written straight into the stack's database.
	st, err := schema.Open(ctx, filepath.Join(s.dataDir, "opsflow.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	approver := &schema.User{Username: "bench-approver", Role: schema.RoleApprover}
	if err := st.CreateUser(ctx, approver); err != nil {
		b.Fatal(err)
	}
	approverToken := "opf_bench_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := st.CreateToken(ctx, &schema.APIToken{UserID: approver.ID, Name: "bench", Prefix: approverToken[:12], TokenHash: api.HashToken(approverToken)}); err != nil {
		b.Fatal(err)
	}
	if code := s.api(http.MethodPost, "/api/v1/approval-policies", map[string]any{"name": "bench", "spec": map[string]any{
		"levels": []map[string]any{{"users": []string{approver.Username}, "rule": "any"}}}}, nil); code != 201 {
		b.Fatalf("policy: %d", code)
	}
	// A Temporal client reading the stack's payloads with its key, to see
	// each ticket's workflow complete.
	key, err := os.ReadFile(filepath.Join(s.dataDir, "secret.key"))
	if err != nil {
		b.Fatal(err)
	}
	k, err := secret.ParseKey(strings.TrimSpace(string(key)))
	if err != nil {
		b.Fatal(err)
	}
	keys, err := secret.NewKeyring(k)
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.Dial(client.Options{HostPort: "127.0.0.1:" + strconv.Itoa(s.tPort), Namespace: "default", DataConverter: keys.DataConverter(),
		ConnectionOptions: client.ConnectionOptions{GrpcCompression: &client.GrpcCompressionNone{}}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()

	type opened struct {
		ID         int64  `json:"id"`
		WorkflowID string `json:"workflow_id"`
	}
	tickets := make([]opened, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range tickets {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if code := s.api(http.MethodPost, "/api/v1/approvals", map[string]any{"title": fmt.Sprintf("bench %d", i), "policy": "bench"}, &tickets[i]); code != 201 {
				b.Errorf("open ticket %d: %d", i, code)
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	// Every ticket waits for its decision before the clock starts.
	eventually(b, 5*time.Minute, "every ticket to open", func() bool {
		var l struct{ Items []schema.Ticket }
		last := int64(0)
		count := 0
		for {
			path := "/api/v1/approvals?mine=to_decide"
			if last > 0 {
				path += "&after=" + strconv.FormatInt(last, 10)
			}
			l.Items = nil
			s.apiAs(approverToken, http.MethodGet, path, nil, &l)
			if len(l.Items) == 0 {
				break
			}
			count += len(l.Items)
			last = l.Items[len(l.Items)-1].ID
		}
		return count == n
	})

	answered := make([]time.Duration, 0, n)
	unblocked := make([]time.Duration, 0, n)
	b.ResetTimer()
	for _, tk := range tickets {
		begin := time.Now()
		var out struct{ Status, Message string }
		if code := s.apiAs(approverToken, http.MethodPost, fmt.Sprintf("/api/v1/approvals/%d/decision", tk.ID), map[string]string{"decision": "approve"}, &out); code != 200 || out.Status != schema.TicketApproved {
			b.Fatalf("decide %d: %d %+v", tk.ID, code, out)
		}
		answered = append(answered, time.Since(begin))
		if err := c.GetWorkflow(ctx, tk.WorkflowID, "").Get(ctx, nil); err != nil {
			b.Fatalf("ticket %d workflow: %v", tk.ID, err)
		}
		unblocked = append(unblocked, time.Since(begin))
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[min(len(s)-1, int(p*float64(len(s))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(answered, 0.5), "answer-p50-ms")
	b.ReportMetric(pct(answered, 0.99), "answer-p99-ms")
	b.ReportMetric(pct(unblocked, 0.5), "unblocked-p50-ms")
	b.ReportMetric(pct(unblocked, 0.99), "unblocked-p99-ms")
	b.Logf("\n| %d decisions via the API, dev stack | p50 ms | p99 ms |\n|---|---|---|\n| answer (vote counted) | %.1f | %.1f |\n| workflow unblocked and closed | %.1f | %.1f |",
		n, pct(answered, 0.5), pct(answered, 0.99), pct(unblocked, 0.5), pct(unblocked, 0.99))
}
