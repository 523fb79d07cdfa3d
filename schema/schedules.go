package schema

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// JobSchedule is a job schedule's definition. The Temporal Schedule that
// fires it (schedule:<name>) carries only its name and creator; what it
// runs is read from here at each firing, so the definition — secret
// parameter values included — never sits in Temporal.
type JobSchedule struct {
	bun.BaseModel `bun:"table:job_schedules"`

	Name         string     `bun:"name,pk"`
	ScriptID     int64      `bun:"script_id"`
	Version      int64      `bun:"version"` // 0: the latest at each firing
	Params       string     `bun:"params"`  // sealed JSON of the request's params
	Targets      JobTargets `bun:"targets,type:text"`
	CredentialID int64      `bun:"credential_id"`
	Policy       JobPolicy  `bun:"policy,type:text"`
	CreatedBy    string     `bun:"created_by"`
	CreatedAt    time.Time  `bun:"created_at"`
}

// ParamsContext binds a schedule's sealed parameters to the schedule.
func (s *JobSchedule) ParamsContext() string { return "schedule-params:" + s.Name }

// SealSchedule is a schedule row for req with its parameters sealed
// (bound to ParamsContext).
func SealSchedule(keys Sealer, name, createdBy string, req JobRequest) *JobSchedule {
	s := &JobSchedule{Name: name, ScriptID: req.ScriptID, Version: req.Version, Targets: req.Targets,
		CredentialID: req.CredentialID, Policy: req.Policy, CreatedBy: createdBy}
	b, _ := json.Marshal(req.Params)
	s.Params = keys.Seal(b, s.ParamsContext())
	return s
}

// Request is the job definition the schedule runs, its parameters opened.
func (s *JobSchedule) Request(keys Sealer) (JobRequest, error) {
	req := JobRequest{ScriptID: s.ScriptID, Version: s.Version, Targets: s.Targets, CredentialID: s.CredentialID, Policy: s.Policy}
	raw, err := keys.Open(s.Params, s.ParamsContext())
	if err != nil {
		return req, fmt.Errorf("schedule %s parameters: %w", s.Name, err)
	}
	if err := json.Unmarshal(raw, &req.Params); err != nil {
		return req, fmt.Errorf("schedule %s parameters: %w", s.Name, err)
	}
	return req, nil
}

// CreateJobSchedule records a schedule's definition; a name taken is
// ErrConflict.
func (s *Store) CreateJobSchedule(ctx context.Context, js *JobSchedule) error {
	js.CreatedAt = time.Now().UTC()
	if _, err := s.DB.NewInsert().Model(js).Exec(ctx); err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("store: job schedule %s: %w", js.Name, ErrConflict)
		}
		return fmt.Errorf("store: create job schedule: %w", err)
	}
	return nil
}

// JobScheduleByName returns the definition of schedule name.
func (s *Store) JobScheduleByName(ctx context.Context, name string) (*JobSchedule, error) {
	js := new(JobSchedule)
	if err := s.DB.NewSelect().Model(js).Where("name = ?", name).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: job schedule %s: %w", name, notFound(err))
	}
	return js, nil
}

// DeleteJobSchedule removes a schedule's definition; none is not an error.
func (s *Store) DeleteJobSchedule(ctx context.Context, name string) error {
	if _, err := s.DB.NewDelete().Model((*JobSchedule)(nil)).Where("name = ?", name).Exec(ctx); err != nil {
		return fmt.Errorf("store: delete job schedule %s: %w", name, err)
	}
	return nil
}

// JobSchedules lists the definitions of every job schedule by name.
func (s *Store) JobSchedules(ctx context.Context) ([]JobSchedule, error) {
	var out []JobSchedule
	if err := s.DB.NewSelect().Model(&out).OrderExpr("name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: job schedules: %w", err)
	}
	return out, nil
}

// RunbookSchedule is a runbook schedule's definition: which runbook (and
// version, 0: the latest at each firing) with which inputs. Like a job
// schedule's, its Temporal Schedule names it only; the inputs, secret
// ones included, are sealed here.
type RunbookSchedule struct {
	bun.BaseModel `bun:"table:runbook_schedules"`

	Name      string    `bun:"name,pk"`
	Runbook   string    `bun:"runbook"`
	Version   int64     `bun:"version"`
	Inputs    string    `bun:"inputs"` // sealed JSON of the inputs
	CreatedBy string    `bun:"created_by"`
	CreatedAt time.Time `bun:"created_at"`
}

// InputsContext binds a runbook schedule's sealed inputs to the schedule.
func (s *RunbookSchedule) InputsContext() string { return "runbook-schedule-inputs:" + s.Name }

// SealRunbookSchedule is a runbook schedule row with inputs sealed.
func SealRunbookSchedule(keys Sealer, name, createdBy, runbook string, version int64, inputs map[string]any) *RunbookSchedule {
	s := &RunbookSchedule{Name: name, Runbook: runbook, Version: version, CreatedBy: createdBy}
	b, _ := json.Marshal(inputs)
	s.Inputs = keys.Seal(b, s.InputsContext())
	return s
}

// OpenInputs returns the schedule's inputs in clear.
func (s *RunbookSchedule) OpenInputs(keys Sealer) (map[string]any, error) {
	raw, err := keys.Open(s.Inputs, s.InputsContext())
	if err != nil {
		return nil, fmt.Errorf("runbook schedule %s inputs: %w", s.Name, err)
	}
	var in map[string]any
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("runbook schedule %s inputs: %w", s.Name, err)
	}
	return in, nil
}

// CreateRunbookSchedule records a runbook schedule's definition; a name
// taken is ErrConflict.
func (s *Store) CreateRunbookSchedule(ctx context.Context, rs *RunbookSchedule) error {
	rs.CreatedAt = time.Now().UTC()
	if _, err := s.DB.NewInsert().Model(rs).Exec(ctx); err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("store: runbook schedule %s: %w", rs.Name, ErrConflict)
		}
		return fmt.Errorf("store: create runbook schedule: %w", err)
	}
	return nil
}

// RunbookScheduleByName returns the definition of runbook schedule name.
func (s *Store) RunbookScheduleByName(ctx context.Context, name string) (*RunbookSchedule, error) {
	rs := new(RunbookSchedule)
	if err := s.DB.NewSelect().Model(rs).Where("name = ?", name).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: runbook schedule %s: %w", name, notFound(err))
	}
	return rs, nil
}

// DeleteRunbookSchedule removes a runbook schedule's definition; none is
// not an error.
func (s *Store) DeleteRunbookSchedule(ctx context.Context, name string) error {
	if _, err := s.DB.NewDelete().Model((*RunbookSchedule)(nil)).Where("name = ?", name).Exec(ctx); err != nil {
		return fmt.Errorf("store: delete runbook schedule %s: %w", name, err)
	}
	return nil
}

// RunbookSchedules lists the definitions of every runbook schedule by name.
func (s *Store) RunbookSchedules(ctx context.Context) ([]RunbookSchedule, error) {
	var out []RunbookSchedule
	if err := s.DB.NewSelect().Model(&out).OrderExpr("name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: runbook schedules: %w", err)
	}
	return out, nil
}
