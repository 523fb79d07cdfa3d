package schema_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opsflow/opsflow/schema"
)

func TestRunbooksVersionsAndDelete(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			name := fmt.Sprintf("rb-%s-%d", engine, time.Now().UnixNano())
			src1 := "metadata: {name: " + name + "}\n# v1\n"
			rb, v1, err := s.CreateRunbook(ctx, schema.RunbookInput{Name: name, Description: "first", Labels: map[string]string{"team": "ops"},
				Source: src1, Comment: "initial"}, "alice")
			if err != nil || v1.Version != 1 || rb.LatestVersion != 1 || v1.SHA256 != schema.SourceSHA256(src1) || v1.CreatedBy != "alice" {
				t.Fatalf("create: %+v %+v %v", rb, v1, err)
			}
			// The same source again adds nothing; another adds version 2
			// and the runbook takes its metadata.
			same, created, err := s.AddRunbookVersion(ctx, name, schema.RunbookInput{Name: name, Source: src1, Comment: "again"}, "bob")
			if err != nil || created || same.Version != 1 || same.Comment != "initial" {
				t.Fatalf("identical source: %+v created=%v %v", same, created, err)
			}
			src2 := "metadata: {name: " + name + "}\n# v2\n"
			v2, created, err := s.AddRunbookVersion(ctx, name, schema.RunbookInput{Name: name, Description: "second", Source: src2}, "bob")
			if err != nil || !created || v2.Version != 2 {
				t.Fatalf("v2: %+v %v", v2, err)
			}
			got, err := s.Runbook(ctx, name)
			if err != nil || got.LatestVersion != 2 || got.Description != "second" || len(got.Labels) != 0 || got.CreatedBy != "alice" {
				t.Fatalf("runbook after v2: %+v %v", got, err)
			}
			if old, err := s.RunbookVersion(ctx, rb.ID, 1); err != nil || old.Source != src1 || old.Comment != "initial" {
				t.Fatalf("v1 reads %+v %v", old, err)
			}
			if vs, err := s.RunbookVersions(ctx, rb.ID); err != nil || len(vs) != 2 || vs[0].Version != 2 || vs[0].Source != "" || vs[0].SHA256 == "" {
				t.Fatalf("versions: %+v %v", vs, err)
			}
			// Versions are immutable in the database too.
			if _, err := s.DB.NewUpdate().Model((*schema.RunbookVersion)(nil)).Set("source = 'x'").Where("runbook_id = ?", rb.ID).Exec(ctx); err == nil {
				t.Fatal("a version was updated")
			}
			if _, err := s.DB.NewDelete().Model((*schema.RunbookVersion)(nil)).Where("runbook_id = ?", rb.ID).Exec(ctx); err == nil {
				t.Fatal("a version was deleted")
			}

			if _, _, err := s.CreateRunbook(ctx, schema.RunbookInput{Name: name, Source: src1}, "x"); fieldsOf(t, err)["metadata.name"] == "" {
				t.Fatalf("duplicate name: %v", err)
			}
			for _, in := range []schema.RunbookInput{{Name: "bad name", Source: "x"}, {Name: "validate", Source: "x"}, {Name: "schema.json", Source: "x"}} {
				if _, _, err := s.CreateRunbook(ctx, in, "x"); fieldsOf(t, err)["metadata.name"] == "" {
					t.Errorf("name %q: %v", in.Name, err)
				}
			}
			if _, _, err := s.CreateRunbook(ctx, schema.RunbookInput{Name: name + "-empty", Source: "  \n"}, "x"); fieldsOf(t, err)["source"] == "" {
				t.Errorf("empty source: %v", err)
			}

			// Deleting keeps the versions and frees the name.
			if err := s.DeleteRunbook(ctx, name, "carol"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Runbook(ctx, name); !errors.Is(err, schema.ErrNotFound) {
				t.Fatalf("deleted runbook reads: %v", err)
			}
			if err := s.DeleteRunbook(ctx, name, "carol"); !errors.Is(err, schema.ErrNotFound) {
				t.Fatalf("second delete: %v", err)
			}
			if _, _, err := s.AddRunbookVersion(ctx, name, schema.RunbookInput{Name: name, Source: src2 + "#"}, "bob"); !errors.Is(err, schema.ErrNotFound) {
				t.Fatalf("version of a deleted runbook: %v", err)
			}
			if old, err := s.RunbookVersion(ctx, rb.ID, 2); err != nil || old.Source != src2 {
				t.Fatalf("deleted runbook's version: %+v %v", old, err)
			}
			again, v, err := s.CreateRunbook(ctx, schema.RunbookInput{Name: name, Source: src1}, "dave")
			if err != nil || again.ID == rb.ID || v.Version != 1 {
				t.Fatalf("name reused: %+v %+v %v", again, v, err)
			}
		})
	}
}

func TestRunbookListPages(t *testing.T) {
	ctx := context.Background()
	for engine, s := range stores(t) {
		t.Run(string(engine), func(t *testing.T) {
			prefix := fmt.Sprintf("rbpage%d", time.Now().UnixNano())
			for i := range 5 {
				name := fmt.Sprintf("%s-%d", prefix, i)
				if _, _, err := s.CreateRunbook(ctx, schema.RunbookInput{Name: name, Source: "x: " + name}, "alice"); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.DeleteRunbook(ctx, prefix+"-4", "alice"); err != nil {
				t.Fatal(err)
			}
			var names []string
			f := schema.RunbookFilter{Q: prefix, Page: schema.Page{Limit: 2}}
			for range 5 {
				rs, info, err := s.RunbookList(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if info.Total != 4 {
					t.Fatalf("total %d, want 4 (deleted ones left out)", info.Total)
				}
				for _, r := range rs {
					names = append(names, r.Name)
				}
				if info.Next == "" {
					break
				}
				f.Cursor = info.Next
			}
			want := fmt.Sprintf("[%[1]s-0 %[1]s-1 %[1]s-2 %[1]s-3]", prefix)
			if fmt.Sprint(names) != want {
				t.Fatalf("pages by name: %v, want %s", names, want)
			}
			if _, _, err := s.RunbookList(ctx, schema.RunbookFilter{Page: schema.Page{Sort: "steps"}}); fieldsOf(t, err)["sort"] == "" {
				t.Fatalf("unknown sort: %v", err)
			}
		})
	}
}
