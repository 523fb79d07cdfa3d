package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/internal/testenv"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// rawPayload is one payload found in a raw Temporal message, with where.
type rawPayload struct {
	p        *commonpb.Payload
	where    string
	indexed  bool // a search attribute: not passed through the codec
	kindHint string
}

// payloadsIn walks a proto message (decoded from the server's bytes, no
// codec involved) and returns every Payload in it.
func payloadsIn(m proto.Message, where string) []rawPayload {
	var out []rawPayload
	var walk func(m protoreflect.Message, path string, indexed bool)
	walk = func(m protoreflect.Message, path string, indexed bool) {
		if p, ok := m.Interface().(*commonpb.Payload); ok {
			out = append(out, rawPayload{p: p, where: where + path, indexed: indexed})
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			sub := path + "." + string(fd.Name())
			idx := indexed || fd.Name() == "search_attributes"
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", sub, i), idx)
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message(), sub+"["+k.String()+"]", idx)
					return true
				})
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				walk(v.Message(), sub, idx)
			}
			return true
		})
	}
	walk(m.ProtoReflect(), "", false)
	return out
}

// payloadBytes is everything a payload holds: its data and metadata.
func payloadBytes(p *commonpb.Payload) []byte {
	b := append([]byte{}, p.GetData()...)
	for k, v := range p.GetMetadata() {
		b = append(append(b, k...), v...)
	}
	return b
}

// rawHistory reads a workflow's history over the raw WorkflowService,
// with no data converter or codec in the way.
func rawHistory(t *testing.T, c client.Client, id string) []*historypb.HistoryEvent {
	t.Helper()
	var events []*historypb.HistoryEvent
	var token []byte
	for {
		res, err := c.WorkflowService().GetWorkflowExecutionHistory(context.Background(), &workflowservice.GetWorkflowExecutionHistoryRequest{
			Namespace: testenv.TemporalNamespace, Execution: &commonpb.WorkflowExecution{WorkflowId: id}, NextPageToken: token})
		if err != nil {
			t.Fatalf("history of %s: %v", id, err)
		}
		events = append(events, res.GetHistory().GetEvents()...)
		if token = res.GetNextPageToken(); len(token) == 0 {
			return events
		}
	}
}

// checkPayloads asserts that none of ps holds any of secrets, neither in
// its raw bytes nor once decoded with the key; every payload but search
// attributes must be sealed by the codec.
func checkPayloads(t *testing.T, keys *secret.Keyring, ps []rawPayload, secrets ...string) {
	t.Helper()
	codec := &secret.PayloadCodec{Keys: keys}
	for _, rp := range ps {
		raw := payloadBytes(rp.p)
		for _, s := range secrets {
			if bytes.Contains(raw, []byte(s)) {
				t.Errorf("%s holds a secret in its raw bytes", rp.where)
			}
		}
		if rp.indexed {
			continue
		}
		if enc := string(rp.p.GetMetadata()["encoding"]); enc != "binary/encrypted" {
			t.Errorf("%s is not sealed by the codec (encoding %q)", rp.where, enc)
			continue
		}
		dec, err := codec.Decode([]*commonpb.Payload{rp.p})
		if err != nil {
			t.Errorf("%s: %v", rp.where, err)
			continue
		}
		for _, s := range secrets {
			if bytes.Contains(payloadBytes(dec[0]), []byte(s)) {
				t.Errorf("%s holds a secret once decoded: %.300s", rp.where, dec[0].GetData())
			}
		}
	}
}

// rawSchedule reads a schedule over the raw WorkflowService.
func rawSchedule(t *testing.T, c client.Client, id string) *workflowservice.DescribeScheduleResponse {
	t.Helper()
	res, err := c.WorkflowService().DescribeSchedule(context.Background(), &workflowservice.DescribeScheduleRequest{Namespace: testenv.TemporalNamespace, ScheduleId: id})
	if err != nil {
		t.Fatalf("schedule %s: %v", id, err)
	}
	return res
}

// secretScript registers a script with a secret parameter TOKEN that
// records a digest of the value it got (never the value) in file mark.
func (e *env) secretScript(name, mark string) int64 {
	return e.script(name, `printf '%s' "$TOKEN" | sha256sum | cut -c1-64 >> `+mark+`; echo "region $REGION"`,
		[]map[string]any{{"name": "TOKEN", "type": "secret"}, {"name": "REGION", "type": "string"}})
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestScheduleHoldsNoSecretInTemporal: a schedule's job definition —
// a secret parameter among it — is kept in the database, sealed; the
// Temporal Schedule names the schedule only, so nothing in Temporal holds
// the secret, raw or decoded. Firing, the job still gets the value;
// deleting the schedule deletes its row. On Postgres and SQLite.
func TestScheduleHoldsNoSecretInTemporal(t *testing.T) {
	for _, engine := range []string{"postgres", "sqlite"} {
		t.Run(engine, func(t *testing.T) {
			e := newEnvWith(t, envOptions{sqlite: engine == "sqlite"})
			ctx := context.Background()
			p := fmt.Sprintf("ss%d", time.Now().UnixNano())
			tok := "tok-" + p + "-Zq9"
			mark := filepath.Join(t.TempDir(), "got")
			sid := e.secretScript(p, mark)
			name := "sec-" + p[len(p)-10:]
			def := map[string]any{"script_id": sid, "params": map[string]any{"TOKEN": tok, "REGION": "eu-1"},
				"targets": map[string]any{"hosts": []string{"h1"}, "transport": "local"}}
			if r := e.do(http.MethodPost, "/api/v1/schedules", "admin", map[string]any{"name": name, "cron": "0 3 1 1 *", "job": def}); r.Status != 201 {
				t.Fatalf("create: %d %s", r.Status, r.Body)
			}
			// In the database: sealed, bound to the schedule.
			row, err := e.store.JobScheduleByName(ctx, name)
			if err != nil || strings.Contains(row.Params, tok) || row.Params == "" || row.CreatedBy != e.users["admin"].Username {
				t.Fatalf("row: %+v %v", row, err)
			}
			// In Temporal: the name, the creator, nothing else.
			sch := rawSchedule(t, e.temporal, workflows.JobScheduleID(name))
			ps := payloadsIn(sch, "schedule")
			checkPayloads(t, e.keys, ps, tok)
			args := sch.GetSchedule().GetAction().GetStartWorkflow().GetInput().GetPayloads()
			if len(args) != 1 {
				t.Fatalf("action args: %v", args)
			}
			dec, err := (&secret.PayloadCodec{Keys: e.keys}).Decode(args)
			if err != nil || !strings.Contains(string(dec[0].Data), `"Schedule":"`+name+`"`) || strings.Contains(string(dec[0].Data), "eu-1") {
				t.Fatalf("the schedule's action carries more than a reference: %s %v", dec[0].GetData(), err)
			}
			// Firing reads the definition and gives the job the secret.
			if r := e.do(http.MethodPost, "/api/v1/schedules/"+name+"/trigger", "admin", map[string]any{}); r.Status != 200 {
				t.Fatalf("trigger: %d %s", r.Status, r.Body)
			}
			var fired string
			eventually(t, 60*time.Second, "the firing", func() bool {
				d, err := e.temporal.ScheduleClient().GetHandle(ctx, workflows.JobScheduleID(name)).Describe(ctx)
				if err != nil || len(d.Info.RecentActions) == 0 || d.Info.RecentActions[0].StartWorkflowResult == nil {
					return false
				}
				fired = d.Info.RecentActions[0].StartWorkflowResult.WorkflowID
				return true
			})
			if err := e.temporal.GetWorkflow(ctx, fired, "").Get(ctx, nil); err != nil {
				t.Fatalf("scheduled job: %v", err)
			}
			if got := lines(mark); got != 1 {
				t.Fatalf("the job ran %d times", got)
			}
			if b, _ := readFile(mark); strings.TrimSpace(b) != digest(tok) {
				t.Fatalf("the job did not get the secret: %q", b)
			}
			for _, id := range []string{fired, "job:" + fired} {
				var ps []rawPayload
				for _, ev := range rawHistory(t, e.temporal, id) {
					ps = append(ps, payloadsIn(ev, id+" "+ev.GetEventType().String())...)
				}
				checkPayloads(t, e.keys, ps, tok)
			}
			if r := e.do(http.MethodDelete, "/api/v1/schedules/"+name, "admin", nil); r.Status != 204 {
				t.Fatalf("delete: %d %s", r.Status, r.Body)
			}
			if _, err := e.store.JobScheduleByName(ctx, name); !errors.Is(err, schema.ErrNotFound) {
				t.Fatalf("the deleted schedule's row: %v", err)
			}
		})
	}
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// gatedJob starts an admin's local job on two hosts that waits for an
// approver's decision, and returns it with its ticket.
func (e *env) gatedJob(p, mark string, params map[string]any) (jobResp, schema.Ticket) {
	t := e.t.(*testing.T)
	marker := "opsflow-gated-" + p
	if r := e.do(http.MethodPost, "/api/v1/risk-rules", "admin", map[string]any{"pattern": marker, "action": "approval", "description": "test gate"}); r.Status != 201 {
		t.Fatalf("risk rule: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodPost, "/api/v1/approval-policies", "admin", map[string]any{"name": p, "spec": map[string]any{
		"match":  map[string]any{"script_risk": "approval"},
		"levels": []map[string]any{{"roles": []string{"approver"}, "rule": "any"}}}}); r.Status != 201 {
		t.Fatalf("policy: %d %s", r.Status, r.Body)
	}
	sid := e.script(p, `echo `+marker+` "$OPSFLOW_HOST" >> `+mark, []map[string]any{{"name": "TOKEN", "type": "secret"}})
	r := e.do(http.MethodPost, "/api/v1/jobs", "admin", map[string]any{"script_id": sid, "params": params,
		"targets": map[string]any{"hosts": []string{"gw-1", "gw-2"}, "transport": "local"}})
	var j jobResp
	r.json(t, &j)
	if r.Status != 201 {
		t.Fatalf("gated job: %d %s", r.Status, r.Body)
	}
	var tk schema.Ticket
	eventually(t, 60*time.Second, "the job waiting for approval", func() bool {
		if e.job(j.ID).Status != schema.JobAwaitingApproval {
			return false
		}
		var l struct{ Items []schema.Ticket }
		e.do(http.MethodGet, "/api/v1/approvals?mine=to_decide", "approver", nil).json(t, &l)
		for _, x := range l.Items {
			if strings.Contains(x.Title, p) && x.WorkflowID != "" {
				tk = x
				return true
			}
		}
		return false
	})
	return j, tk
}

// TestCodecRawPayloadsNeverHoldSecret runs every kind of opsflow
// workflow with a known secret about — a job's secret parameter, a
// scheduled job's, a password credential's, an approval with a vote — and
// reads what the real Temporal server stored, over the raw service (no
// codec): workflow start inputs, activity inputs and results, child
// workflow inputs and results, update arguments and results, schedule
// actions. Every payload is sealed, and neither its raw bytes nor its
// decoded bytes hold a secret.
func TestCodecRawPayloadsNeverHoldSecret(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	since := time.Now().Add(-time.Second)
	p := fmt.Sprintf("raw%d", time.Now().UnixNano())
	tok := "tok-" + p + "-Qx7"
	password := "pw-" + p + "-Lm3"
	mark := filepath.Join(t.TempDir(), "got")

	// A job with a secret parameter.
	sid := e.secretScript(p, mark)
	params := map[string]any{"TOKEN": tok, "REGION": "eu-1"}
	r := e.do(http.MethodPost, "/api/v1/jobs", "admin", map[string]any{"script_id": sid, "params": params,
		"targets": map[string]any{"hosts": []string{"h1", "h2"}, "transport": "local"}})
	var j jobResp
	r.json(t, &j)
	if r.Status != 201 {
		t.Fatalf("job: %d %s", r.Status, r.Body)
	}
	// A schedule of it, fired.
	name := "raw-" + p[len(p)-10:]
	if r := e.do(http.MethodPost, "/api/v1/schedules", "admin", map[string]any{"name": name, "cron": "0 3 1 1 *", "job": map[string]any{
		"script_id": sid, "params": params, "targets": map[string]any{"hosts": []string{"h3"}, "transport": "local"}}}); r.Status != 201 {
		t.Fatalf("schedule: %d %s", r.Status, r.Body)
	}
	t.Cleanup(func() { e.do(http.MethodDelete, "/api/v1/schedules/"+name, "admin", nil) })
	if r := e.do(http.MethodPost, "/api/v1/schedules/"+name+"/trigger", "admin", map[string]any{}); r.Status != 200 {
		t.Fatalf("trigger: %d %s", r.Status, r.Body)
	}
	// A recurring discovery with a password credential (discovery reaches
	// hosts not yet in the CMDB, which only an admin may allow).
	cr := e.do(http.MethodPost, "/api/v1/credentials", "admin", map[string]any{"name": p + "-pw", "kind": "password", "username": "ops", "password": password,
		"allow_unlisted_hosts": true})
	var cred schema.Credential
	cr.json(t, &cred)
	if cr.Status != 201 {
		t.Fatalf("credential: %d %s", cr.Status, cr.Body)
	}
	dr := e.do(http.MethodPost, "/api/v1/cmdb/discoveries", "operator", map[string]any{"addresses": []string{"127.0.0.1:1"}, "credential_id": cred.ID, "schedule": "0 4 1 1 *"})
	var ds struct {
		ScheduleID string `json:"schedule_id"`
	}
	dr.json(t, &ds)
	if dr.Status != 201 {
		t.Fatalf("discovery schedule: %d %s", dr.Status, dr.Body)
	}
	t.Cleanup(func() { e.do(http.MethodDelete, "/api/v1/cmdb/discoveries/schedules/"+ds.ScheduleID, "operator", nil) })
	// A discovery run now, with the same credential.
	var disc struct{ ID string }
	if r := e.do(http.MethodPost, "/api/v1/cmdb/discoveries", "operator", map[string]any{"addresses": []string{"127.0.0.1:1"}, "credential_id": cred.ID}); r.Status != 201 {
		t.Fatalf("discovery: %d %s", r.Status, r.Body)
	} else {
		r.json(t, &disc)
	}
	// A gated job with a secret parameter, approved by a vote.
	gmark := filepath.Join(t.TempDir(), "gated")
	gj, tk := e.gatedJob(p+"g", gmark, map[string]any{"TOKEN": tok})
	if r := e.do(http.MethodPost, fmt.Sprintf("/api/v1/approvals/%d/decision", tk.ID), "approver", map[string]any{"decision": "approve", "comment": "ok"}); r.Status != 200 {
		t.Fatalf("approve: %d %s", r.Status, r.Body)
	}
	for _, id := range []int64{j.ID, gj.ID} {
		if done := e.waitJob(id, schema.JobSucceeded, schema.JobFailed); done.Status != schema.JobSucceeded {
			t.Fatalf("job %d: %+v", id, done)
		}
	}
	eventually(t, 60*time.Second, "the scheduled job", func() bool { return lines(mark) == 3 })

	// Every workflow this test started, once closed, over the raw service.
	// Others in the window (the previous test's, under another key) are
	// not this test's to read.
	mine := map[string]bool{disc.ID: true}
	for _, id := range []int64{j.ID, gj.ID} {
		job, err := e.store.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		mine[job.WorkflowID] = true
		mine[workflows.JobTicketWorkflowID(job.WorkflowID)] = true
	}
	firing := workflows.JobScheduleID(name)
	isMine := func(id string) bool {
		return mine[id] || strings.HasPrefix(id, firing) || strings.HasPrefix(id, workflows.ScheduledJobWorkflowID(firing))
	}
	kinds := map[string]int{}
	var ids []string
	eventually(t, 90*time.Second, "every run closed", func() bool {
		ids = ids[:0]
		res, err := e.temporal.WorkflowService().ListWorkflowExecutions(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: testenv.TemporalNamespace, PageSize: 1000, Query: "StartTime >= '" + since.UTC().Format(time.RFC3339Nano) + "'"})
		if err != nil {
			return false
		}
		open := false
		for _, x := range res.GetExecutions() {
			if !isMine(x.GetExecution().GetWorkflowId()) {
				continue
			}
			ids = append(ids, x.GetExecution().GetWorkflowId())
			open = open || x.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
		}
		// Two jobs, a firing and its job, a discovery, an approval.
		return !open && len(ids) >= 6
	})
	for _, id := range ids {
		var ps []rawPayload
		for _, ev := range rawHistory(t, e.temporal, id) {
			found := payloadsIn(ev, id+" "+ev.GetEventType().String())
			for _, f := range found {
				if !f.indexed {
					kinds[ev.GetEventType().String()]++
				}
			}
			ps = append(ps, found...)
		}
		checkPayloads(t, e.keys, ps, tok, password)
	}
	for _, id := range []string{workflows.JobScheduleID(name), ds.ScheduleID} {
		ps := payloadsIn(rawSchedule(t, e.temporal, id), id)
		if len(ps) == 0 {
			t.Fatalf("schedule %s: no payload found", id)
		}
		kinds["schedule action"]++
		checkPayloads(t, e.keys, ps, tok, password)
	}
	for _, k := range []string{"WorkflowExecutionStarted", "ActivityTaskScheduled", "ActivityTaskCompleted",
		"WorkflowExecutionUpdateAccepted", "WorkflowExecutionUpdateCompleted", "StartChildWorkflowExecutionInitiated",
		"ChildWorkflowExecutionCompleted", "WorkflowExecutionCompleted", "schedule action"} {
		if kinds[k] == 0 {
			t.Errorf("no payload of kind %s was checked (%v)", k, kinds)
		}
	}
	t.Logf("payloads checked by kind: %v", kinds)
}

// TestStrictCodecRefusesForgedVote: someone who reaches the Temporal
// frontend without opsflow's key — a plain SDK client on the same real
// server — cannot vote on a ticket (the update's input does not decode,
// so it is refused and nothing is counted) nor start an opsflow workflow
// (its input never decodes: no activity runs, nothing is recorded).
func TestStrictCodecRefusesForgedVote(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := fmt.Sprintf("forge%d", time.Now().UnixNano())
	mark := filepath.Join(t.TempDir(), "ran")
	j, tk := e.gatedJob(p, mark, map[string]any{"TOKEN": "x-" + p})
	plain := testenv.TemporalClient(t, client.Options{}) // no codec, no key

	uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h, err := plain.UpdateWorkflow(uctx, client.UpdateWorkflowOptions{WorkflowID: tk.WorkflowID, UpdateName: workflows.UpdateDecide,
		Args:         []any{workflows.ApprovalDecision{Voter: e.users["approver"].Username, Decision: schema.DecisionApprove, Channel: "api"}},
		WaitForStage: client.WorkflowUpdateStageCompleted})
	if err == nil {
		var out workflows.ApprovalOutcome
		err = h.Get(uctx, &out)
		if err == nil {
			t.Fatalf("a forged vote was accepted: %+v", out)
		}
	}
	t.Logf("forged vote refused: %v", err)
	var full struct {
		Status    string
		Decisions []any
	}
	e.do(http.MethodGet, fmt.Sprintf("/api/v1/approvals/%d", tk.ID), "viewer", nil).json(t, &full)
	if full.Status != schema.TicketPending || len(full.Decisions) != 0 {
		t.Fatalf("the forged vote counted: %+v", full)
	}
	for _, ev := range rawHistory(t, e.temporal, tk.WorkflowID) {
		if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED {
			t.Fatalf("the forged vote is in the ticket's history: %v", ev)
		}
	}
	if st := e.job(j.ID).Status; st != schema.JobAwaitingApproval || lines(mark) != 0 {
		t.Fatalf("after a forged vote the job is %s, %d hosts ran", st, lines(mark))
	}

	// A forged start: the workflow's input never decodes, so it fails
	// before doing anything.
	fid := "demo:forged-" + p
	if _, err := plain.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fid, TaskQueue: workflows.TaskQueueOps}, workflows.Demo,
		workflows.DemoInput{Steps: 1, Target: "forged"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plain.TerminateWorkflow(context.WithoutCancel(ctx), fid, "", "test over") })
	var failure string
	eventually(t, 60*time.Second, "the forged workflow failing", func() bool {
		for _, ev := range rawHistory(t, e.temporal, fid) {
			if a := ev.GetWorkflowExecutionFailedEventAttributes(); a != nil {
				failure = a.GetFailure().GetMessage() + " " + a.GetFailure().GetCause().GetMessage()
				return true
			}
			if a := ev.GetWorkflowTaskFailedEventAttributes(); a != nil {
				failure = a.GetFailure().GetMessage()
				return true
			}
		}
		return false
	})
	if !strings.Contains(failure, "unencrypted payload") {
		t.Errorf("the forged start failed for another reason: %s", failure)
	}
	for _, ev := range rawHistory(t, e.temporal, fid) {
		if ev.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED {
			t.Fatalf("the forged workflow scheduled an activity")
		}
	}
	if _, err := e.store.Run(ctx, fid); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("the forged workflow was recorded: %v", err)
	}
	// The ticket still works for its real approver.
	if r := e.do(http.MethodPost, fmt.Sprintf("/api/v1/approvals/%d/decision", tk.ID), "approver", map[string]any{"decision": "approve"}); r.Status != 200 {
		t.Fatalf("approve: %d %s", r.Status, r.Body)
	}
	if done := e.waitJob(j.ID, schema.JobSucceeded, schema.JobFailed); done.Status != schema.JobSucceeded || lines(mark) != 2 {
		t.Fatalf("approved job: %+v, %d hosts ran", done, lines(mark))
	}
}
