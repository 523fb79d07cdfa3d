package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// ErrTypeStepFailed: a runbook step's side effect answered, and the
// answer is a failure (an HTTP status not expected, a CI refused). The
// step's own retry policy decides whether it runs again, not Temporal's.
const ErrTypeStepFailed = "StepFailed"

// RunbookSource returns the text of a stored runbook version (0: the
// latest) and the version it is. The runbook store provides it.
type RunbookSource func(ctx context.Context, name string, version int64) (source string, ver int64, err error)

// Runbooks are the side effects of runbook steps and the runbook read
// model (run_steps, runbook_runs).
type Runbooks struct {
	Store   *schema.Store
	Secrets *secret.Keyring
	// Notifiers deliver notify steps; "web" needs none.
	Notifiers []Notifier
	// HTTP sends http steps; nil is a client that may not connect to the
	// worker itself or link-local addresses (httpguard.go) beyond
	// HTTPAllowNets.
	HTTP          *http.Client
	HTTPAllowNets []netip.Prefix
	// Source reads stored runbooks for runbook steps; nil refuses them.
	Source RunbookSource
}

// Secret inputs never travel in clear: a run's input holds them sealed
// (bound to the run that was started with them), and an expression that
// reads one gets a reference, ⟦secret:name⟧, which only the activities
// that must hand the value on (script parameters, HTTP requests) replace
// with the opened value.
var secretRefRE = regexp.MustCompile(`⟦secret:([A-Za-z_][A-Za-z0-9_]*)⟧`)

// SecretRef is what an expression reads for secret input name.
func SecretRef(name string) string { return "⟦secret:" + name + "⟧" }

// RunbookSecretContext binds a sealed secret input to the run (its
// top-level workflow ID) and the input's name.
func RunbookSecretContext(run, name string) string { return "runbook-input:" + run + ":" + name }

// RunbookSecrets are a run's sealed secret inputs.
type RunbookSecrets struct {
	Run    string            // the workflow ID they are bound to
	Sealed map[string]string // by input name
}

// open replaces the secret references in s with their values.
func (a *Runbooks) open(s string, sec RunbookSecrets) (string, error) {
	var bad error
	out := secretRefRE.ReplaceAllStringFunc(s, func(ref string) string {
		name := secretRefRE.FindStringSubmatch(ref)[1]
		sealed, ok := sec.Sealed[name]
		if !ok {
			return ref
		}
		pt, err := a.Secrets.Open(sealed, RunbookSecretContext(sec.Run, name))
		if err != nil {
			bad = err
			return ref
		}
		return string(pt)
	})
	if bad != nil {
		return "", temporal.NewNonRetryableApplicationError("secret input: "+bad.Error(), ErrTypeInvalidInput, nil)
	}
	return out, nil
}

// openAll opens the secret references in every string of v.
func (a *Runbooks) openAll(v any, sec RunbookSecrets) (any, error) {
	switch v := v.(type) {
	case string:
		return a.open(v, sec)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			x, err := a.openAll(e, sec)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			x, err := a.openAll(e, sec)
			if err != nil {
				return nil, err
			}
			out[k] = x
		}
		return out, nil
	}
	return v, nil
}

func stepFailed(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), ErrTypeStepFailed, nil)
}

func invalid(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), ErrTypeInvalidInput, nil)
}

// RecordRunbookStartInput records a runbook run in the read model.
type RecordRunbookStartInput struct {
	WorkflowID string
	RunID      string
	Runbook    string
	RunbookID  int64 // 0: not known
	// RunRecorded: the run's row in runs is written already (by the API).
	RunRecorded bool
	Version     int64
	Inputs      map[string]any // secret inputs left out
	StartedBy   string
	Parent      string // the parent run of a sub-runbook
}

// RecordRunbookStart writes the run's row in runs (kind runbook) and in
// runbook_runs; repeating it changes nothing.
func (a *Runbooks) RecordRunbookStart(ctx context.Context, in RecordRunbookStartInput) (struct{}, error) {
	if !in.RunRecorded {
		if err := a.Store.RecordRunStart(ctx, &schema.Run{WorkflowID: in.WorkflowID, RunID: in.RunID, Kind: "runbook",
			StartedBy: in.StartedBy, Target: in.Runbook}); err != nil {
			return struct{}{}, err
		}
	}
	return struct{}{}, a.Store.RecordRunbookRun(ctx, &schema.RunbookRun{WorkflowID: in.WorkflowID, Runbook: in.Runbook, RunbookID: in.RunbookID,
		Version: in.Version, Inputs: in.Inputs, ParentWorkflowID: in.Parent})
}

// RecordRunbookStepsInput reports steps of run WorkflowID and, with
// SetFailedStep, the step the run waits on ("" once it goes on).
type RecordRunbookStepsInput struct {
	WorkflowID    string
	Steps         []schema.RunStep
	SetFailedStep bool
	FailedStep    string
	// Status, when set, is the run's status in runs (running or
	// awaiting_retry) with Summary.
	Status  string
	Summary string
}

// RecordRunbookSteps writes step reports (see schema.Store.RecordRunSteps).
func (a *Runbooks) RecordRunbookSteps(ctx context.Context, in RecordRunbookStepsInput) (struct{}, error) {
	for i := range in.Steps {
		in.Steps[i].WorkflowID = in.WorkflowID
	}
	if err := a.Store.RecordRunSteps(ctx, in.Steps); err != nil {
		return struct{}{}, err
	}
	if in.SetFailedStep {
		if err := a.Store.SetRunbookFailedStep(ctx, in.WorkflowID, in.FailedStep); err != nil {
			return struct{}{}, err
		}
	}
	if in.Status != "" {
		info := activity.GetInfo(ctx)
		return struct{}{}, a.Store.RecordRunStatus(ctx, in.WorkflowID, info.WorkflowExecution.RunID, "runbook", in.Status, in.Summary, time.Now())
	}
	return struct{}{}, nil
}

// CreateRunbookJobInput is a script step: the arguments of the step as
// interpolated (secret inputs as references), and who the run acts for.
type CreateRunbookJobInput struct {
	Run           string // the runbook run's workflow ID
	JobWorkflowID string // the job's BatchJob, unique per run and step
	StartedBy     string
	Script        string
	Version       int64
	Params        map[string]any
	Targets       schema.JobTargets
	Credential    string
	Policy        schema.JobPolicy
	Secrets       RunbookSecrets
}

// CreateRunbookJobResult is the job created (or found, on a retry).
type CreateRunbookJobResult struct {
	JobID      int64
	WorkflowID string
	Total      int
	Policy     schema.JobPolicy
}

// CreateRunbookJob creates a script step's job through CreateJob — the
// one way a job comes to be — as the run's user, with its parameters'
// secret references opened and sealed with the job. The workflow runs the
// job's BatchJob as its child; the job is in the jobs list and the UI like
// any other, its run in runs.
func (a *Runbooks) CreateRunbookJob(ctx context.Context, in CreateRunbookJobInput) (CreateRunbookJobResult, error) {
	record := func(j *schema.Job) (CreateRunbookJobResult, error) {
		target := j.Targets.Selector
		if target == "" {
			target = fmt.Sprintf("%d hosts", j.Total)
		}
		if err := a.Store.RecordRunStart(ctx, &schema.Run{WorkflowID: in.JobWorkflowID, Kind: "job", StartedBy: j.CreatedBy, Target: target}); err != nil {
			return CreateRunbookJobResult{}, err
		}
		return CreateRunbookJobResult{JobID: j.ID, WorkflowID: in.JobWorkflowID, Total: j.Total, Policy: j.Policy}, nil
	}
	if j, err := a.Store.JobByWorkflowID(ctx, in.JobWorkflowID); err == nil {
		return record(j)
	}
	scriptID, err := a.Store.ScriptIDByName(ctx, in.Script)
	if errors.Is(err, schema.ErrNotFound) {
		return CreateRunbookJobResult{}, invalid("script %q does not exist", in.Script)
	} else if err != nil {
		return CreateRunbookJobResult{}, err
	}
	req := schema.JobRequest{ScriptID: scriptID, Version: in.Version, Params: map[string]json.RawMessage{}, Targets: in.Targets, Policy: in.Policy}
	if in.Credential != "" {
		c, err := a.Store.CredentialByName(ctx, in.Credential)
		if errors.Is(err, schema.ErrNotFound) {
			return CreateRunbookJobResult{}, invalid("credential %q does not exist", in.Credential)
		} else if err != nil {
			return CreateRunbookJobResult{}, err
		}
		req.CredentialID = c.ID
	}
	for k, v := range in.Params {
		v, err := a.openAll(v, in.Secrets)
		if err != nil {
			return CreateRunbookJobResult{}, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return CreateRunbookJobResult{}, invalid("parameter %s: %v", k, err)
		}
		req.Params[k] = b
	}
	by, err := a.Store.UserByUsername(ctx, in.StartedBy)
	if errors.Is(err, schema.ErrNotFound) {
		return CreateRunbookJobResult{}, temporal.NewNonRetryableApplicationError("the run's user "+in.StartedBy+" no longer exists", ErrTypeForbidden, nil)
	} else if err != nil {
		return CreateRunbookJobResult{}, err
	}
	job, _, err := CreateJob(ctx, a.Store, a.Secrets, JobOrder{Request: req, WorkflowID: in.JobWorkflowID, By: by},
		func(context.Context, *schema.Job, string) error { return nil })
	var ve *schema.ValidationError
	switch {
	case errors.As(err, &ve):
		return CreateRunbookJobResult{}, invalid("%s", ve.Error())
	case errors.Is(err, ErrLocalTransportAdminOnly), errors.Is(err, ErrMayNotCreateJobs):
		return CreateRunbookJobResult{}, temporal.NewNonRetryableApplicationError(by.Username+" ("+by.Role+"): "+err.Error(), ErrTypeForbidden, nil)
	case err != nil:
		return CreateRunbookJobResult{}, err
	}
	return record(job)
}

// OpenRunbookTicketInput is an approval step.
type OpenRunbookTicketInput struct {
	Run         string // the runbook run's workflow ID, which the ticket gates
	WorkflowID  string // the ticket's Approval workflow
	Requester   string
	Policy      string
	Title       string
	Description string
}

// OpenRunbookTicket opens (once, also when retried) an approval step's
// ticket under its policy and resolves every level's approvers.
func (a *Runbooks) OpenRunbookTicket(ctx context.Context, in OpenRunbookTicketInput) (OpenJobTicketResult, error) {
	t, err := a.Store.TicketByWorkflowID(ctx, in.WorkflowID)
	if errors.Is(err, schema.ErrNotFound) {
		p, err := a.Store.ApprovalPolicyByName(ctx, in.Policy)
		if errors.Is(err, schema.ErrNotFound) {
			return OpenJobTicketResult{}, invalid("approval policy %q does not exist", in.Policy)
		} else if err != nil {
			return OpenJobTicketResult{}, err
		}
		t = &schema.Ticket{WorkflowID: in.WorkflowID, Title: in.Title, Description: in.Description, Requester: in.Requester,
			GatedWorkflowID: in.Run, Risk: "medium", PolicyName: p.Name, Policy: p.Spec}
		if err := a.Store.CreateTicket(ctx, t); err != nil && !errors.Is(err, schema.ErrConflict) {
			return OpenJobTicketResult{}, err
		}
		if t, err = a.Store.TicketByWorkflowID(ctx, in.WorkflowID); err != nil {
			return OpenJobTicketResult{}, err
		}
	} else if err != nil {
		return OpenJobTicketResult{}, err
	}
	res := OpenJobTicketResult{WorkflowID: in.WorkflowID, Input: ApprovalTicket{TicketID: t.ID, Requester: t.Requester, Policy: t.Policy}}
	if res.Input.Approvers, err = a.Store.ResolveLevels(ctx, t.Policy, t.Requester); errors.Is(err, schema.ErrNoApprover) {
		return OpenJobTicketResult{}, invalid("approval policy %s, %v (%s)", t.PolicyName, err, t.Requester)
	} else if err != nil {
		return OpenJobTicketResult{}, err
	}
	return res, nil
}

// RunbookTicketResult is a decided ticket as an approval step reports it.
type RunbookTicketResult struct {
	Status    string
	DecidedBy []string
}

// RunbookTicket reads an approval step's ticket once it is decided.
func (a *Runbooks) RunbookTicket(ctx context.Context, ticketID int64) (RunbookTicketResult, error) {
	t, err := a.Store.Ticket(ctx, ticketID)
	if err != nil {
		return RunbookTicketResult{}, err
	}
	res := RunbookTicketResult{Status: t.Status, DecidedBy: []string{}}
	for _, d := range t.Decisions {
		res.DecidedBy = append(res.DecidedBy, d.Voter)
	}
	return res, nil
}

// RunbookJobCounts counts a script step's job's hosts by state, for a job
// that failed (its BatchJob's error carries no counts).
func (a *Runbooks) RunbookJobCounts(ctx context.Context, jobID int64) (map[string]int64, error) {
	counts, err := a.Store.JobCounts(ctx, jobID)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for state, n := range counts {
		out[state] = int64(n)
	}
	return out, nil
}

// RunbookHTTPInput is an http step.
type RunbookHTTPInput struct {
	URL          string
	Method       string
	Headers      map[string]string
	Body         any // a string as is, anything else as JSON; nil: none
	Credential   string
	ExpectStatus []int
	Secrets      RunbookSecrets
}

// RunbookHTTPResult is the response: a JSON body decoded, else a string
// (at most 64 KiB of it).
type RunbookHTTPResult struct {
	Status  int
	Body    any
	Headers map[string]string
}

const maxHTTPBody = 64 << 10

// RunbookHTTP sends an http step's request. A credential authenticates
// it: basic auth with its username, else a bearer token. A status not
// expected fails the step (ErrTypeStepFailed); a transport error is
// retried by Temporal.
func (a *Runbooks) RunbookHTTP(ctx context.Context, in RunbookHTTPInput) (RunbookHTTPResult, error) {
	url, err := a.open(in.URL, in.Secrets)
	if err != nil {
		return RunbookHTTPResult{}, err
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return RunbookHTTPResult{}, invalid("url must be http:// or https://")
	}
	var body io.Reader
	switch b := in.Body.(type) {
	case nil:
	case string:
		s, err := a.open(b, in.Secrets)
		if err != nil {
			return RunbookHTTPResult{}, err
		}
		body = strings.NewReader(s)
	default:
		v, err := a.openAll(b, in.Secrets)
		if err != nil {
			return RunbookHTTPResult{}, err
		}
		j, err := json.Marshal(v)
		if err != nil {
			return RunbookHTTPResult{}, invalid("body: %v", err)
		}
		body = bytes.NewReader(j)
	}
	method := in.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return RunbookHTTPResult{}, invalid("request: %v", err)
	}
	if _, ok := in.Body.(string); !ok && in.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range in.Headers {
		v, err := a.open(v, in.Secrets)
		if err != nil {
			return RunbookHTTPResult{}, err
		}
		req.Header.Set(k, v)
	}
	var cred *schema.Credential
	if in.Credential != "" {
		c, err := a.Store.CredentialByName(ctx, in.Credential)
		if errors.Is(err, schema.ErrNotFound) {
			return RunbookHTTPResult{}, invalid("credential %q does not exist", in.Credential)
		} else if err != nil {
			return RunbookHTTPResult{}, err
		}
		// A runbook's author names the URL: only a secret made for http
		// steps, and only to the URLs an admin scoped it to, may go.
		if c.Kind != schema.CredHTTP {
			return RunbookHTTPResult{}, invalid("credential %s is a %s credential: http steps send only http credentials", c.Name, c.Kind)
		}
		if !c.HTTPScopeAllows(req.URL) {
			return RunbookHTTPResult{}, invalid("credential %s may not be sent to %s (its scope: %s)", c.Name, req.URL.Redacted(), c.Scope)
		}
		cred = c
		sec, err := a.Secrets.Open(c.Secret, c.SealContext())
		if err != nil {
			return RunbookHTTPResult{}, invalid("credential %s: %v", c.Name, err)
		}
		if c.Username != "" {
			req.SetBasicAuth(c.Username, string(sec))
		} else {
			req.Header.Set("Authorization", "Bearer "+string(sec))
		}
	}
	hc := a.HTTP
	if hc == nil {
		hc = guardedHTTPClient(a.HTTPAllowNets)
	}
	if cred != nil {
		// A redirect goes on only within the credential's scope.
		c := *hc
		c.CheckRedirect = func(r *http.Request, via []*http.Request) error {
			if len(via) >= 10 || !cred.HTTPScopeAllows(r.URL) {
				return fmt.Errorf("redirect to %s: outside credential %s's scope", r.URL.Redacted(), cred.Name)
			}
			return nil
		}
		hc = &c
	}
	resp, err := hc.Do(req)
	if err != nil {
		return RunbookHTTPResult{}, fmt.Errorf("http step: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody))
	res := RunbookHTTPResult{Status: resp.StatusCode, Headers: map[string]string{}}
	for k := range resp.Header {
		res.Headers[strings.ToLower(k)] = resp.Header.Get(k)
	}
	var decoded any
	if json.Unmarshal(raw, &decoded) == nil {
		res.Body = decoded
	} else {
		res.Body = string(raw)
	}
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if len(in.ExpectStatus) > 0 {
		ok = false
		for _, s := range in.ExpectStatus {
			ok = ok || s == resp.StatusCode
		}
	}
	if !ok {
		return res, stepFailed("%s %s: status %d not expected", method, req.URL.Redacted(), resp.StatusCode)
	}
	return res, nil
}

// RunbookNotifyInput is a notify step.
type RunbookNotifyInput struct {
	Run     string
	Channel string
	To      []string
	Title   string
	Message string
}

// RunbookNotify sends a notify step's message through the notifier of its
// channel as a notice (Announcer: nothing to decide, a link to the run).
// Secret references are sent as they are, never opened.
func (a *Runbooks) RunbookNotify(ctx context.Context, in RunbookNotifyInput) (struct{}, error) {
	if in.Channel == "web" {
		return struct{}{}, nil
	}
	for _, n := range a.Notifiers {
		if n.Channel() != in.Channel {
			continue
		}
		an, ok := n.(Announcer)
		if !ok {
			return struct{}{}, invalid("the %s notifier sends approvals only, not notices", in.Channel)
		}
		return struct{}{}, an.Announce(ctx, in.Title, in.Message, "/runs/"+url.PathEscape(in.Run), in.To)
	}
	return struct{}{}, invalid("no %s notifier is configured on this worker", in.Channel)
}

// QueryRunbookCIsInput lists CIs for cmdb.query and foreach steps.
type QueryRunbookCIsInput struct {
	Type     string
	Selector string
	Attrs    map[string]string
	Limit    int
	// Brief leaves attributes out (a foreach over thousands of CIs).
	Brief bool
}

// RunbookCI is a CI as runbook expressions read it.
type RunbookCI struct {
	ID         int64             `json:"id"`
	Type       string            `json:"type"`
	Name       string            `json:"name"`
	Labels     map[string]string `json:"labels"`
	Attributes map[string]any    `json:"attributes,omitempty"`
}

// QueryRunbookCIs lists matching CIs, at most Limit (default 1,000,
// foreach asks for up to 10,000).
func (a *Runbooks) QueryRunbookCIs(ctx context.Context, in QueryRunbookCIsInput) ([]RunbookCI, error) {
	limit := in.Limit
	if limit <= 0 {
		limit = 1000
	}
	out := []RunbookCI{}
	cursor := ""
	for len(out) < limit {
		cis, next, err := a.Store.CIs(ctx, schema.CIQuery{Type: in.Type, Selector: in.Selector, Attrs: in.Attrs, Cursor: cursor, Limit: min(500, limit-len(out))})
		var ve *schema.ValidationError
		if errors.As(err, &ve) {
			return nil, invalid("%s", ve.Error())
		} else if err != nil {
			return nil, err
		}
		for _, c := range cis {
			labels := c.Labels
			if labels == nil {
				labels = map[string]string{}
			}
			rc := RunbookCI{ID: c.ID, Type: c.Type, Name: c.Name, Labels: labels, Attributes: c.Attributes}
			if in.Brief {
				rc.Attributes = nil
			}
			out = append(out, rc)
		}
		if next == "" || len(cis) == 0 {
			break
		}
		cursor = next
	}
	return out, nil
}

// UpdateRunbookCIsInput is a cmdb.update step.
type UpdateRunbookCIsInput struct {
	Run          string // the runbook run, named in each CI's history
	StartedBy    string
	CI           string
	Selector     string
	Type         string
	Labels       map[string]string
	RemoveLabels []string
	Attributes   map[string]any
}

// UpdateRunbookCIs sets labels and attributes of one CI or every CI a
// selector matches; each change names the run in the CI's history, the
// change feed and the audit log. Applied again (a retry) it changes
// nothing more.
func (a *Runbooks) UpdateRunbookCIs(ctx context.Context, in UpdateRunbookCIsInput) (int, error) {
	ch := schema.Change{Actor: in.StartedBy, RunID: in.Run}
	var targets []schema.CI
	if in.CI != "" {
		typ := in.Type
		if typ == "" {
			typ = "host"
		}
		c, err := a.Store.CIByName(ctx, typ, in.CI)
		if errors.Is(err, schema.ErrNotFound) {
			return 0, stepFailed("%s %q does not exist", typ, in.CI)
		} else if err != nil {
			return 0, err
		}
		targets = append(targets, *c)
	} else {
		cis, err := a.QueryRunbookCIs(ctx, QueryRunbookCIsInput{Type: in.Type, Selector: in.Selector, Limit: 10000})
		if err != nil {
			return 0, err
		}
		for _, c := range cis {
			full, err := a.Store.CI(ctx, c.ID)
			if err != nil {
				return 0, err
			}
			targets = append(targets, *full)
		}
	}
	patch := schema.CIPatch{Labels: map[string]*string{}, Attributes: map[string]json.RawMessage{}}
	for k, v := range in.Labels {
		patch.Labels[k] = &v
	}
	for _, k := range in.RemoveLabels {
		patch.Labels[k] = nil
	}
	for k, v := range in.Attributes {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, invalid("attribute %s: %v", k, err)
		}
		patch.Attributes[k] = b
	}
	updated := 0
	cmdb := &CMDB{Store: a.Store}
	for _, c := range targets {
		after, err := a.Store.UpdateCI(ctx, c.ID, c.Version, patch, ch)
		var ve *schema.ValidationError
		if errors.As(err, &ve) {
			return updated, stepFailed("%s %s: %s", c.Type, c.Name, ve.Error())
		} else if err != nil {
			return updated, err // a concurrent edit: the retry reads the new version
		}
		if after.Version != c.Version {
			updated++
			cmdb.audit(ctx, ch, "cmdb.ci.update", c.ID)
		}
	}
	activity.GetLogger(ctx).Info("runbook cmdb update", "run", in.Run, "updated", strconv.Itoa(updated))
	return updated, nil
}

// LoadRunbookInput names a stored runbook version (0: the latest).
type LoadRunbookInput struct {
	Name    string
	Version int64
}

// LoadRunbookResult is its text and version.
type LoadRunbookResult struct {
	Source  string
	Version int64
}

// LoadRunbook reads a stored runbook for a runbook step.
func (a *Runbooks) LoadRunbook(ctx context.Context, in LoadRunbookInput) (LoadRunbookResult, error) {
	if a.Source == nil {
		return LoadRunbookResult{}, invalid("this worker has no runbook store")
	}
	src, ver, err := a.Source(ctx, in.Name, in.Version)
	if errors.Is(err, schema.ErrNotFound) {
		return LoadRunbookResult{}, invalid("runbook %s version %d does not exist", in.Name, in.Version)
	} else if err != nil {
		return LoadRunbookResult{}, err
	}
	return LoadRunbookResult{Source: src, Version: ver}, nil
}

// ResealRunbookSecretsInput hands secret inputs to a sub-runbook: each of
// the child's secret inputs is given as a value holding references to the
// parent's secrets (or plain text), opened and sealed again for the child.
type ResealRunbookSecretsInput struct {
	From   RunbookSecrets
	To     string            // the child run's workflow ID
	Values map[string]string // child input name -> value with references
}

// ResealRunbookSecrets seals a sub-runbook's secret inputs for it.
func (a *Runbooks) ResealRunbookSecrets(ctx context.Context, in ResealRunbookSecretsInput) (map[string]string, error) {
	out := map[string]string{}
	for name, v := range in.Values {
		pt, err := a.open(v, in.From)
		if err != nil {
			return nil, err
		}
		out[name] = a.Secrets.Seal([]byte(pt), RunbookSecretContext(in.To, name))
	}
	return out, nil
}
