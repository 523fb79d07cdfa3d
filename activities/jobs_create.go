package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
)

// ErrLocalTransportAdminOnly refuses the local transport to anyone but an
// admin: it runs the script as the worker's own user, which can read the
// secret key and the database.
var ErrLocalTransportAdminOnly = errors.New("the local transport runs scripts as the opsflow worker's own user: only an admin may use it")

// ErrMayNotCreateJobs refuses a job to a user who may no longer create
// jobs (disabled, or no longer an operator or admin).
var ErrMayNotCreateJobs = errors.New("may not create jobs")

// JobOrder asks for one job.
type JobOrder struct {
	Request schema.JobRequest
	// WorkflowID is the job's run: unique per job, and the key of a
	// repeated order (the same ID returns the job already created).
	WorkflowID string
	// By is who asks, as the users table has them now.
	By       *schema.User
	ParentID *int64
}

// JobStarter starts a created job's run; target describes its hosts.
type JobStarter func(ctx context.Context, job *schema.Job, target string) error

// AuthorizeJob checks what a planned request needs of the user beyond the
// right to create jobs: the local transport is admin-only.
func AuthorizeJob(by *schema.User, req *schema.JobRequest) error {
	if req.Targets.Transport == schema.TransportLocal && (by == nil || by.Role != schema.RoleAdmin) {
		return ErrLocalTransportAdminOnly
	}
	return nil
}

// PlanJobFor plans req (see schema.Store.PlanJob) for user by. A transport
// by may not use is refused before any other fault of the request.
func PlanJobFor(ctx context.Context, st *schema.Store, by *schema.User, req *schema.JobRequest) (*schema.ScriptVersion, map[string]string, []schema.JobHost, error) {
	ver, params, hosts, err := st.PlanJob(ctx, req)
	if aerr := AuthorizeJob(by, req); aerr != nil {
		return nil, nil, nil, aerr
	}
	return ver, params, hosts, err
}

// CreateJob is the one way a job comes to be, for the API and for
// schedules alike: it plans the order (a selector picks today's hosts),
// checks that its user may run it, seals its parameters, records the job
// and its hosts, and starts it. If a job already has the order's workflow
// ID, it is returned instead (created false). If start fails, the job is
// recorded as failed.
func CreateJob(ctx context.Context, st *schema.Store, keys *secret.Keyring, o JobOrder, start JobStarter) (job *schema.Job, created bool, err error) {
	if existing, err := st.JobByWorkflowID(ctx, o.WorkflowID); err == nil {
		return existing, false, nil
	}
	if o.By == nil || o.By.Disabled || (o.By.Role != schema.RoleOperator && o.By.Role != schema.RoleAdmin) {
		return nil, false, ErrMayNotCreateJobs
	}
	req := o.Request
	ver, params, hosts, err := PlanJobFor(ctx, st, o.By, &req)
	if err != nil {
		return nil, false, err
	}
	job = &schema.Job{WorkflowID: o.WorkflowID, ScriptID: ver.ScriptID, ScriptVersion: ver.Version, Targets: req.Targets,
		CredentialID: req.CredentialID, Policy: req.Policy, Status: schema.JobQueued, ParentID: o.ParentID, CreatedBy: o.By.Username}
	b, _ := json.Marshal(params)
	job.Params = keys.Seal(b, job.ParamsContext())
	if err := st.CreateJob(ctx, job, hosts); err != nil {
		return nil, false, err
	}
	target := req.Targets.Selector
	if target == "" {
		target = fmt.Sprintf("%d hosts", len(hosts))
	}
	if err := start(ctx, job, target); err != nil {
		_ = st.SetJobStatus(context.WithoutCancel(ctx), job.ID, schema.JobFailed, "could not start: "+err.Error())
		return nil, false, err
	}
	return job, true, nil
}
