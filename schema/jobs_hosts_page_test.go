package schema_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
)

// TestJobHostsPageAndSchedules: a job's hosts page by offset, in one
// state or all; the job schedules list by name.
func TestJobHostsPageAndSchedules(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			sfx := fmt.Sprintf("%s-%d", engine, time.Now().UnixNano())
			sc, ver, err := s.CreateScript(ctx, schema.ScriptInput{Name: "hp-" + sfx, Content: "true"}, "alice")
			if err != nil {
				t.Fatal(err)
			}
			local, err := s.LocalCredential(ctx)
			if err != nil {
				t.Fatal(err)
			}
			job := &schema.Job{WorkflowID: "job:hp-" + sfx, ScriptID: sc.ID, ScriptVersion: ver.Version, CredentialID: local.ID, Status: schema.JobQueued}
			hosts := make([]schema.JobHost, 5)
			for i := range hosts {
				hosts[i].Address = fmt.Sprintf("10.0.0.%d", i)
			}
			if err := s.CreateJob(ctx, job, hosts); err != nil {
				t.Fatal(err)
			}
			if err := s.FailJobHosts(ctx, job.ID, []int{1, 3, 4}, "down"); err != nil {
				t.Fatal(err)
			}
			idxs := func(hs []schema.JobHost, err error) []int {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				out := []int{}
				for _, h := range hs {
					out = append(out, h.Idx)
				}
				return out
			}
			if got := fmt.Sprint(idxs(s.JobHostsPage(ctx, job.ID, schema.HostFailed, 1, 2))); got != "[3 4]" {
				t.Errorf("failed hosts from offset 1: %s", got)
			}
			if got := fmt.Sprint(idxs(s.JobHostsPage(ctx, job.ID, "", 2, 2))); got != "[2 3]" {
				t.Errorf("all hosts from offset 2: %s", got)
			}
			if got := fmt.Sprint(idxs(s.JobHostsPage(ctx, job.ID, "", 5, 2))); got != "[]" {
				t.Errorf("past the end: %s", got)
			}

			name := "list-" + sfx
			row := &schema.JobSchedule{Name: name, ScriptID: sc.ID, CreatedBy: "alice"}
			if err := s.CreateJobSchedule(ctx, row); err != nil {
				t.Fatal(err)
			}
			all, err := s.JobSchedules(ctx)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, r := range all {
				found = found || r.Name == name && r.ScriptID == sc.ID
			}
			if !found {
				t.Fatalf("schedule %s not listed in %d", name, len(all))
			}
		})
	}
}
