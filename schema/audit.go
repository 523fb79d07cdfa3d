package schema

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"
)

// AuditEntry is one row of the append-only audit log: who did what to which
// target, when, from where, under which request.
type AuditEntry struct {
	bun.BaseModel `bun:"table:audit_log"`

	ID        int64     `bun:"id,pk,autoincrement" json:"id"`
	At        time.Time `bun:"at" json:"at"`
	Actor     string    `bun:"actor" json:"actor"`
	ActorID   *int64    `bun:"actor_id" json:"actor_id,omitempty"`
	Action    string    `bun:"action" json:"action"`
	Target    string    `bun:"target" json:"target"`
	SourceIP  string    `bun:"source_ip" json:"source_ip"`
	RequestID string    `bun:"request_id" json:"request_id"`
	Status    int       `bun:"status" json:"status"`
	Detail    string    `bun:"detail" json:"detail,omitempty"`
}

// AppendAudit adds e to the log. The tables reject updates and deletes.
func (s *Store) AppendAudit(ctx context.Context, e *AuditEntry) error {
	return appendAudit(ctx, s.DB, e)
}

// Audit fields are capped: an entry records what happened, not whatever a
// client sent (a path, a username) at whatever length.
const (
	MaxAuditActor  = 128
	MaxAuditAction = 128
	MaxAuditTarget = 512
	MaxAuditDetail = 2048
	maxAuditShort  = 128 // source address, request ID
)

func appendAudit(ctx context.Context, db bun.IDB, e *AuditEntry) error {
	if e.At.IsZero() {
		e.At = time.Now().UTC()
	}
	capAudit(e)
	if _, err := db.NewInsert().Model(e).Returning("id").Exec(ctx); err != nil {
		return fmt.Errorf("store: append audit %q: %w", e.Action, err)
	}
	return nil
}

// AuditFilter selects audit entries; zero fields match everything. Before
// is the older cursor: only entries with a smaller ID.
type AuditFilter struct {
	Actor       string
	Action      string // exact, or a prefix ending in '*'
	Target      string
	Since       time.Time
	Until       time.Time
	Q           string // searches the target and detail
	Before      int64
	Sort, Order string // see Page
	Cursor      string
	Limit       int
}

// Audit lists entries newest first.
func (s *Store) Audit(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	es, _, err := s.auditList(ctx, f, false)
	return es, err
}

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return 50
	case n > 500:
		return 500
	}
	return n
}

// escapeLike makes s literal inside a LIKE pattern. Both engines accept
// backslash as the escape character only when told; we avoid the need by
// rejecting wildcards in the prefix instead.
func escapeLike(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' || s[i] == '_' {
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}

// capAudit makes e's text storable and bounded: valid UTF-8 without NUL,
// each field cut (on a character boundary, marked with "…") to its cap.
func capAudit(e *AuditEntry) {
	e.Actor = capText(e.Actor, MaxAuditActor)
	e.Action = capText(e.Action, MaxAuditAction)
	e.Target = capText(e.Target, MaxAuditTarget)
	e.Detail = capText(e.Detail, MaxAuditDetail)
	e.SourceIP = capText(e.SourceIP, maxAuditShort)
	e.RequestID = capText(e.RequestID, maxAuditShort)
}

// capText returns s as valid UTF-8 without NUL, at most n bytes.
func capText(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
