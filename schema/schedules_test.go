package schema_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
)

// TestJobSchedulesSealed: a schedule's definition is stored with its
// parameters sealed to the schedule, opens back whole, is unique by name,
// is re-sealed with the primary key on rotation, and goes with delete.
func TestJobSchedulesSealed(t *testing.T) {
	ctx := context.Background()
	k1, _ := secret.ParseKey(secret.NewKey())
	k2, _ := secret.ParseKey(secret.NewKey())
	old, _ := secret.NewKeyring(k1)
	rotated, _ := secret.NewKeyring(k2, k1)
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			name := fmt.Sprintf("sched-%s-%d", engine, time.Now().UnixNano())
			req := schema.JobRequest{ScriptID: 7, Params: map[string]json.RawMessage{"TOKEN": json.RawMessage(`"hunter2-xyz"`), "N": json.RawMessage(`3`)},
				Targets: schema.JobTargets{Selector: "env=prod", Transport: schema.TransportLocal}, Policy: schema.JobPolicy{Concurrency: "5"}}
			row := schema.SealSchedule(old, name, "alice", req)
			if strings.Contains(row.Params, "hunter2") {
				t.Fatal("parameters in clear")
			}
			if err := s.CreateJobSchedule(ctx, row); err != nil {
				t.Fatal(err)
			}
			if err := s.CreateJobSchedule(ctx, schema.SealSchedule(old, name, "bob", req)); !errors.Is(err, schema.ErrConflict) {
				t.Fatalf("a second schedule of the same name: %v", err)
			}
			got, err := s.JobScheduleByName(ctx, name)
			if err != nil || got.CreatedBy != "alice" {
				t.Fatalf("read: %+v %v", got, err)
			}
			back, err := got.Request(old)
			if err != nil || string(back.Params["TOKEN"]) != `"hunter2-xyz"` || string(back.Params["N"]) != "3" ||
				back.Targets.Selector != req.Targets.Selector || back.Targets.Transport != req.Targets.Transport || back.Policy != req.Policy || back.ScriptID != 7 {
				t.Fatalf("request: %+v %v", back, err)
			}
			// Sealed to this schedule: another's context does not open it.
			other := *got
			other.Name = name + "-x"
			if _, err := other.Request(old); err == nil {
				t.Fatal("parameters opened under another schedule's name")
			}
			// (The package's Postgres database holds other tests' fake
			// sealed values, which Reseal refuses; SQLite is this test's.)
			if engine == schema.SQLite {
				if _, err := s.Reseal(ctx, rotated, false); err != nil {
					t.Fatal(err)
				}
				got, _ = s.JobScheduleByName(ctx, name)
				if rotated.Stale(got.Params) {
					t.Fatal("not re-sealed with the primary key")
				}
				if _, err := got.Request(rotated); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.DeleteJobSchedule(ctx, name); err != nil {
				t.Fatal(err)
			}
			if _, err := s.JobScheduleByName(ctx, name); !errors.Is(err, schema.ErrNotFound) {
				t.Fatalf("after delete: %v", err)
			}
		})
	}
}
