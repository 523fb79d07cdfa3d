package schema

import (
	"context"
	"database/sql/driver"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"
)

// Job and host states.
const (
	JobQueued    = "queued"
	JobRunning   = "running"
	JobPaused    = "paused"
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
	JobAborted   = "aborted"
	// A gated job waits for its approval ticket; refused, it ends rejected.
	JobAwaitingApproval = "awaiting_approval"
	JobRejected         = "rejected"

	HostPending   = "pending"
	HostRunning   = "running"
	HostSucceeded = "succeeded"
	HostFailed    = "failed"
	HostSkipped   = "skipped"
)

// JobPolicy is how a job runs over its hosts.
type JobPolicy struct {
	// Concurrency is N or N% of the hosts (at least 1).
	Concurrency string `json:"concurrency"`
	// Batch splits the hosts into rolling batches: N, N% or +N (growing
	// by N each batch); empty means one batch.
	Batch string `json:"batch,omitempty"`
	// PauseAfterFirstBatch waits for a resume after the first batch.
	PauseAfterFirstBatch bool `json:"pause_after_first_batch,omitempty"`
	// MaxFailures is the error budget, N or N%: once more hosts than this
	// failed, no new host starts. Empty means no budget.
	MaxFailures string `json:"max_failures,omitempty"`
	// HostTimeout and JobTimeout are Go durations.
	HostTimeout string `json:"host_timeout,omitempty"`
	JobTimeout  string `json:"job_timeout,omitempty"`
	// Approval names the approval policy gating the job: set when a
	// policy's match fits it, or asked for by the caller.
	Approval string `json:"approval,omitempty"`
}

// JobTargets is what a job was asked to target.
type JobTargets struct {
	Selector string   `json:"selector,omitempty"`
	Hosts    []string `json:"hosts,omitempty"`
	// Transport is how the script reaches each host: ssh (the default;
	// through the credential's jump host when it names one) or local, on
	// the SSH worker itself with OPSFLOW_HOST naming the target (for
	// scripts that drive devices or APIs rather than log in).
	Transport string `json:"transport,omitempty"`
}

// Transports.
const (
	TransportSSH   = "ssh"
	TransportLocal = "local"
)

// Job is a batch execution of a script version over hosts.
type Job struct {
	bun.BaseModel `bun:"table:jobs"`

	ID            int64      `bun:"id,pk,autoincrement" json:"id"`
	WorkflowID    string     `bun:"workflow_id" json:"workflow_id"`
	ScriptID      int64      `bun:"script_id" json:"script_id"`
	ScriptVersion int64      `bun:"script_version" json:"script_version"`
	Params        string     `bun:"params" json:"-"`
	Targets       JobTargets `bun:"targets,type:text" json:"targets"`
	CredentialID  int64      `bun:"credential_id" json:"credential_id"`
	Policy        JobPolicy  `bun:"policy,type:text" json:"policy"`
	Status        string     `bun:"status" json:"status"`
	Total         int        `bun:"total" json:"total"`
	ParentID      *int64     `bun:"parent_id" json:"parent_id,omitempty"`
	CreatedBy     string     `bun:"created_by" json:"created_by"`
	CreatedAt     time.Time  `bun:"created_at" json:"created_at"`
	EndedAt       *time.Time `bun:"ended_at" json:"ended_at"`
	Summary       string     `bun:"summary" json:"summary"`
}

// ParamsContext binds a job's sealed parameters to the job.
func (j *Job) ParamsContext() string { return "job-params:" + j.WorkflowID }

// JobHost is one host of a job.
type JobHost struct {
	bun.BaseModel `bun:"table:job_hosts"`

	JobID       int64      `bun:"job_id,pk" json:"job_id"`
	Idx         int        `bun:"idx,pk" json:"idx"`
	Address     string     `bun:"address" json:"address"`
	CIID        *int64     `bun:"ci_id" json:"ci_id,omitempty"`
	State       string     `bun:"state" json:"state"`
	ExitCode    *int       `bun:"exit_code" json:"exit_code"`
	Attempts    int        `bun:"attempts" json:"attempts"`
	StartedAt   *time.Time `bun:"started_at" json:"started_at"`
	EndedAt     *time.Time `bun:"ended_at" json:"ended_at"`
	Output      Bytes      `bun:"output" json:"output,omitempty"`
	OutputBytes int64      `bun:"output_bytes" json:"output_bytes"`
	Truncated   bool       `bun:"truncated" json:"truncated"`
	Error       string     `bun:"error" json:"error,omitempty"`
}

// MarshalJSON adds output_base64, the exact bytes, when output is not.
func (h JobHost) MarshalJSON() ([]byte, error) {
	type plain JobHost
	return json.Marshal(struct {
		plain
		OutputBase64 string `json:"output_base64,omitempty"`
	}{plain(h), h.Output.base64IfLossy()})
}

// Bytes is text made of any bytes: script output, with NUL, escape codes
// and invalid UTF-8 as the script wrote them. It is stored as bytes
// (bytea on Postgres, a BLOB on SQLite), which take any value, and read
// back the same. In JSON it is a string, exact for valid UTF-8 (NUL and
// escape codes come out as \u0000 and \u001b); a byte that is not UTF-8
// comes out as U+FFFD, so records that hold one also carry the exact bytes
// in base64 beside it (output_base64, data_base64).
type Bytes string

// Value stores b as bytes.
func (b Bytes) Value() (driver.Value, error) { return []byte(b), nil }

// Scan reads bytes, or text stored before output was bytes.
func (b *Bytes) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*b = ""
	case []byte:
		*b = Bytes(v)
	case string:
		*b = Bytes(v)
	default:
		return fmt.Errorf("bytes: cannot scan %T", v)
	}
	return nil
}

func (b Bytes) base64IfLossy() string {
	if utf8.ValidString(string(b)) {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(b))
}

// Done reports whether the host reached a final state.
func (h *JobHost) Done() bool {
	return h.State == HostSucceeded || h.State == HostFailed || h.State == HostSkipped
}

// CreateJob inserts a job and its hosts (in order) in one transaction.
func (s *Store) CreateJob(ctx context.Context, j *Job, hosts []JobHost) error {
	j.CreatedAt = time.Now().UTC()
	j.Total = len(hosts)
	return s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(j).Returning("id").Exec(ctx); err != nil {
			return fmt.Errorf("store: create job: %w", err)
		}
		for i := range hosts {
			hosts[i].JobID, hosts[i].Idx, hosts[i].State = j.ID, i, HostPending
		}
		for start := 0; start < len(hosts); start += importChunk {
			chunk := hosts[start:min(start+importChunk, len(hosts))]
			if _, err := tx.NewInsert().Model(&chunk).Exec(ctx); err != nil {
				return fmt.Errorf("store: create job hosts: %w", err)
			}
		}
		return nil
	})
}

// Job returns job id.
func (s *Store) Job(ctx context.Context, id int64) (*Job, error) {
	j := new(Job)
	if err := s.DB.NewSelect().Model(j).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: job %d: %w", id, notFound(err))
	}
	return j, nil
}

// Jobs lists jobs newest first.
func (s *Store) Jobs(ctx context.Context, limit int) ([]Job, error) {
	var js []Job
	if err := s.DB.NewSelect().Model(&js).OrderExpr("id DESC").Limit(int64(clampLimit(limit))).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: jobs: %w", err)
	}
	return js, nil
}

// SetJobStatus records a job's status; a final one sets ended_at.
// A job that has ended keeps its final status.
func (s *Store) SetJobStatus(ctx context.Context, id int64, status, summary string) error {
	q := s.DB.NewUpdate().Model((*Job)(nil)).Set("status = ?", status).Set("summary = ?", summary).Where("id = ?", id).Where("ended_at IS NULL")
	if status == JobSucceeded || status == JobFailed || status == JobAborted || status == JobRejected {
		q = q.Set("ended_at = ?", time.Now().UTC())
	}
	if _, err := q.Exec(ctx); err != nil {
		return fmt.Errorf("store: set job %d status: %w", id, err)
	}
	return nil
}

// JobHost returns one host of a job.
func (s *Store) JobHost(ctx context.Context, jobID int64, idx int) (*JobHost, error) {
	h := new(JobHost)
	if err := s.DB.NewSelect().Model(h).Where("job_id = ? AND idx = ?", jobID, idx).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: job %d host %d: %w", jobID, idx, notFound(err))
	}
	return h, nil
}

// JobHostsAt returns the given hosts of a job, by index.
func (s *Store) JobHostsAt(ctx context.Context, jobID int64, idxs []int) (map[int]*JobHost, error) {
	var hs []JobHost
	if err := s.DB.NewSelect().Model(&hs).Where("job_id = ? AND idx IN (?)", jobID, bun.In(idxs)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: job %d hosts: %w", jobID, err)
	}
	out := make(map[int]*JobHost, len(hs))
	for i := range hs {
		out[hs[i].Idx] = &hs[i]
	}
	return out, nil
}

// StartJobHosts is StartJobHost for several hosts, in one statement.
func (s *Store) StartJobHosts(ctx context.Context, jobID int64, idxs []int) error {
	if len(idxs) == 0 {
		return nil
	}
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if s.Engine == Postgres {
			if _, err := tx.ExecContext(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
				return err
			}
		}
		_, err := tx.NewUpdate().Model((*JobHost)(nil)).Set("state = ?", HostRunning).Set("attempts = attempts + 1").
			Set("started_at = COALESCE(started_at, ?)", time.Now().UTC()).Where("job_id = ? AND idx IN (?)", jobID, bun.In(idxs)).Exec(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: start job hosts: %w", err)
	}
	return nil
}

// JobHosts lists hosts of a job by index, optionally in one state; output
// is left out (see JobHost).
func (s *Store) JobHosts(ctx context.Context, jobID int64, state string, after, limit int) ([]JobHost, error) {
	var hs []JobHost
	q := s.DB.NewSelect().Model(&hs).ExcludeColumn("output").Where("job_id = ?", jobID).Where("idx > ?", after).
		OrderExpr("idx").Limit(int64(limit))
	if state != "" {
		q = q.Where("state = ?", state)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: job hosts: %w", err)
	}
	return hs, nil
}

// JobHostStates returns the state of each of a job's hosts, in host
// order: the whole job at a glance, without the rows' other columns.
func (s *Store) JobHostStates(ctx context.Context, jobID int64) ([]string, error) {
	var states []string
	if err := s.DB.NewSelect().Table("job_hosts").Column("state").Where("job_id = ?", jobID).OrderExpr("idx").Scan(ctx, &states); err != nil {
		return nil, fmt.Errorf("store: job host states: %w", err)
	}
	return states, nil
}

// JobCounts counts a job's hosts by state.
func (s *Store) JobCounts(ctx context.Context, jobID int64) (map[string]int, error) {
	var rows []struct {
		State string `bun:"state"`
		N     int    `bun:"n"`
	}
	if err := s.DB.NewSelect().Table("job_hosts").ColumnExpr("state, COUNT(*) AS n").Where("job_id = ?", jobID).Group("state").Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("store: job counts: %w", err)
	}
	out := map[string]int{}
	for _, r := range rows {
		out[r.State] = r.N
	}
	return out, nil
}

// StartJobHost marks a host running and counts the attempt.
//
// On Postgres it commits without waiting for the WAL flush: losing the mark
// in a database crash loses nothing (the host's retry sets it again), and
// a job of many hosts is spared one disk flush per host.
func (s *Store) StartJobHost(ctx context.Context, jobID int64, idx int) error {
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if s.Engine == Postgres {
			if _, err := tx.ExecContext(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
				return err
			}
		}
		_, err := tx.NewUpdate().Model((*JobHost)(nil)).Set("state = ?", HostRunning).Set("attempts = attempts + 1").
			Set("started_at = COALESCE(started_at, ?)", time.Now().UTC()).Where("job_id = ? AND idx = ?", jobID, idx).Exec(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: start job host: %w", err)
	}
	return nil
}

// FinishJobHost records a host's final state and output, and the last
// pieces of its live output (those read at the end), in one transaction.
func (s *Store) FinishJobHost(ctx context.Context, h *JobHost, lastPieces ...string) error {
	return s.finishJobHost(ctx, h, false, lastPieces)
}

// FinishJobHostAsync is FinishJobHost committing without waiting for the
// WAL flush (on Postgres): a group of hosts run by one activity records
// each as it ends, then calls SyncCommits once before reporting them.
func (s *Store) FinishJobHostAsync(ctx context.Context, h *JobHost, lastPieces ...string) error {
	return s.finishJobHost(ctx, h, true, lastPieces)
}

// SyncCommits returns once every commit made before it is on disk: a
// commit that waits for its WAL flush flushes all WAL before it.
func (s *Store) SyncCommits(ctx context.Context) error {
	if s.Engine != Postgres {
		return nil
	}
	return s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.ExecContext(ctx, "SELECT txid_current()") // an xid makes the commit a WAL record
		return err
	})
}

func (s *Store) finishJobHost(ctx context.Context, h *JobHost, async bool, lastPieces []string) error {
	now := time.Now().UTC()
	h.EndedAt = &now
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if async && s.Engine == Postgres {
			if _, err := tx.ExecContext(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
				return err
			}
		}
		// The first outcome recorded stands: an attempt that ran beside
		// it (a retry started while a slow one still ran) only saw the
		// same execution, perhaps after its output was scrubbed.
		res, err := tx.NewUpdate().Model(h).Column("state", "exit_code", "ended_at", "output", "output_bytes", "truncated", "error").
			WherePK().Where("state NOT IN (?)", bun.In([]string{HostSucceeded, HostFailed})).Exec(ctx)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 || len(lastPieces) == 0 {
			return err
		}
		os := make([]JobOutput, len(lastPieces))
		for i, d := range lastPieces {
			os[i] = JobOutput{JobID: h.JobID, Idx: h.Idx, At: now, Data: Bytes(d)}
		}
		_, err = tx.NewInsert().Model(&os).Exec(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: finish job host: %w", err)
	}
	return nil
}

// FailJobHosts marks the given hosts failed with reason, unless they
// already ended.
func (s *Store) FailJobHosts(ctx context.Context, jobID int64, idxs []int, reason string) error {
	if len(idxs) == 0 {
		return nil
	}
	_, err := s.DB.NewUpdate().Model((*JobHost)(nil)).Set("state = ?", HostFailed).Set("error = ?", reason).
		Set("ended_at = ?", time.Now().UTC()).Where("job_id = ? AND idx IN (?)", jobID, bun.In(idxs)).
		Where("state IN (?)", bun.In([]string{HostPending, HostRunning})).Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: fail job hosts: %w", err)
	}
	return nil
}

// SkipPendingHosts marks every pending host of a job skipped (error budget
// spent, or the job aborted).
func (s *Store) SkipPendingHosts(ctx context.Context, jobID int64, reason string) error {
	_, err := s.DB.NewUpdate().Model((*JobHost)(nil)).Set("state = ?", HostSkipped).Set("error = ?", reason).
		Set("ended_at = ?", time.Now().UTC()).Where("job_id = ? AND state IN (?)", jobID, bun.In([]string{HostPending, HostRunning})).Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: skip job hosts: %w", err)
	}
	return nil
}

// JobByWorkflowID returns the job run by workflow id.
func (s *Store) JobByWorkflowID(ctx context.Context, id string) (*Job, error) {
	j := new(Job)
	if err := s.DB.NewSelect().Model(j).Where("workflow_id = ?", id).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: job %q: %w", id, notFound(err))
	}
	return j, nil
}

// JobOutput is a piece of a host's output, in arrival order.
type JobOutput struct {
	bun.BaseModel `bun:"table:job_output"`

	ID    int64     `bun:"id,pk,autoincrement" json:"id"`
	JobID int64     `bun:"job_id" json:"job_id"`
	Idx   int       `bun:"idx" json:"idx"`
	At    time.Time `bun:"at" json:"at"`
	Data  Bytes     `bun:"data" json:"data"`
}

// MarshalJSON adds data_base64, the exact bytes, when data is not.
func (o JobOutput) MarshalJSON() ([]byte, error) {
	type plain JobOutput
	return json.Marshal(struct {
		plain
		DataBase64 string `json:"data_base64,omitempty"`
	}{plain(o), o.Data.base64IfLossy()})
}

// AppendJobOutput stores a piece of a running host's output.
func (s *Store) AppendJobOutput(ctx context.Context, jobID int64, idx int, data string) error {
	o := &JobOutput{JobID: jobID, Idx: idx, At: time.Now().UTC(), Data: Bytes(data)}
	if _, err := s.DB.NewInsert().Model(o).Exec(ctx); err != nil {
		return fmt.Errorf("store: append job output: %w", err)
	}
	return nil
}

// JobOutputs lists output pieces of a job (one host when idx >= 0) after
// a cursor, oldest first.
func (s *Store) JobOutputs(ctx context.Context, jobID int64, idx int, after int64, limit int) ([]JobOutput, error) {
	var os []JobOutput
	q := s.DB.NewSelect().Model(&os).Where("job_id = ? AND id > ?", jobID, after).OrderExpr("id").Limit(int64(clampLimit(limit)))
	if idx >= 0 {
		q = q.Where("idx = ?", idx)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: job output: %w", err)
	}
	return os, nil
}

// JobHostsPage is one page of a job's hosts by index, optionally in one
// state, from offset; output is left out.
func (s *Store) JobHostsPage(ctx context.Context, jobID int64, state string, offset, limit int) ([]JobHost, error) {
	var hs []JobHost
	q := s.DB.NewSelect().Model(&hs).ExcludeColumn("output").Where("job_id = ?", jobID).OrderExpr("idx").Offset(int64(offset)).Limit(int64(limit))
	if state != "" {
		q = q.Where("state = ?", state)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: job hosts page: %w", err)
	}
	return hs, nil
}
