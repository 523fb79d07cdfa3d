// Package workflows holds opsflow's durable logic. Everything that crosses a
// process boundary by name — task queues, workflow types, update and query
// names, workflow IDs, search attributes — is declared in this file, so a
// rename (which breaks running workflows) shows up in one diff.
package workflows

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

// Task queues. SSH activities run on their own queue so SSH workers can be
// deployed close to the hosts and capped independently.
const (
	TaskQueueOps = "ops"
	TaskQueueSSH = "ops-ssh"
)

// TaskQueues lists every queue a worker may serve.
var TaskQueues = []string{TaskQueueOps, TaskQueueSSH}

// Run kinds, as stored in the read model and the OpsflowKind search
// attribute.
const (
	KindDemo      = "demo"
	KindDiscovery = "discovery"
	KindJob       = "job"
	KindApproval  = "approval"
	KindRunbook   = "runbook"
)

// Query and update names.
const (
	QueryProgress        = "progress"
	UpdatePause          = "pause"
	UpdateResume         = "resume"
	UpdateAbort          = "abort"
	UpdateSetConcurrency = "set_concurrency"
	QueryTicket          = "ticket"
	UpdateDecide         = "decide"
	UpdateWithdraw       = "withdraw"
	// QueryRunbook answers a runbook run's RunbookProgress.
	QueryRunbook = "runbook"
	// UpdateRetryStep makes a runbook run waiting after a failed step go
	// on from that step.
	UpdateRetryStep = "retry_step"
	// SignalHostsDone carries []activities.HostDone from a host group to
	// its job's workflow.
	SignalHostsDone = "hosts_done"
)

// Search attributes opsflow sets on its workflows. The dev stack registers
// them when it creates the namespace; `opsflow migrate up` registers them on
// an external cluster.
var (
	SAKind      = temporal.NewSearchAttributeKeyKeyword("OpsflowKind")
	SAStartedBy = temporal.NewSearchAttributeKeyKeyword("OpsflowStartedBy")
	SATarget    = temporal.NewSearchAttributeKeyKeyword("OpsflowTarget")
)

// SearchAttributeTypes maps each search attribute to its indexed type.
var SearchAttributeTypes = map[string]enumspb.IndexedValueType{
	SAKind.GetName():      enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	SAStartedBy.GetName(): enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	SATarget.GetName():    enumspb.INDEXED_VALUE_TYPE_KEYWORD,
}

// RunWorkflowID builds the workflow ID of a run of kind. With an
// idempotency key the ID is derived from the caller and the key, so a
// repeated start names the same workflow; without one it is unique.
func RunWorkflowID(kind string, userID int64, idempotencyKey, unique string) string {
	if idempotencyKey == "" {
		return kind + ":" + unique
	}
	// The key is the caller's; scope it to the caller so two services
	// cannot collide, and hash it so any printable key makes a safe ID.
	sum := sha256.Sum256([]byte(fmt.Sprintf("%d\x00%s", userID, idempotencyKey)))
	return kind + ":k-" + hex.EncodeToString(sum[:12])
}

// KindOf returns the kind prefix of a workflow ID built by RunWorkflowID.
func KindOf(workflowID string) string {
	kind, _, _ := strings.Cut(workflowID, ":")
	return kind
}

// JobScheduleID is the Temporal schedule of job schedule name; its firings'
// workflow IDs start with it too.
func JobScheduleID(name string) string { return jobSchedulePrefix + name }

// JobScheduleName is the name of the job schedule with Temporal schedule
// ID id, and whether id is one.
func JobScheduleName(id string) (string, bool) { return strings.CutPrefix(id, jobSchedulePrefix) }

const jobSchedulePrefix = "schedule:"

// DiscoveryScheduleID is the Temporal schedule of a recurring discovery,
// from a digest of its definition (12 hex digits).
func DiscoveryScheduleID(digest string) string { return DiscoverySchedulePrefix + digest }

// DiscoverySchedulePrefix starts the ID of every discovery schedule.
const DiscoverySchedulePrefix = KindDiscovery + ":sched-"

// JobTicketWorkflowID is the Approval workflow that gates the job whose
// BatchJob runs as jobWorkflowID.
func JobTicketWorkflowID(jobWorkflowID string) string { return KindApproval + ":" + jobWorkflowID }

// ScheduledJobWorkflowID is the BatchJob of the job a schedule's firing
// (workflow firingWorkflowID) creates: one per firing, also on retries.
func ScheduledJobWorkflowID(firingWorkflowID string) string { return KindJob + ":" + firingWorkflowID }

// ScheduledRunbookWorkflowID is the Runbook run a runbook schedule's
// firing (workflow firingWorkflowID) starts: one per firing.
func ScheduledRunbookWorkflowID(firingWorkflowID string) string {
	return KindRunbook + ":" + firingWorkflowID
}

// Runbook runs. A runbook run's ID is RunWorkflowID(KindRunbook, …); what
// it starts is named after it, its step's path and the step's attempt
// (a retry from a failed step starts a new job, ticket or child run).

// RunbookJobWorkflowID is the BatchJob of attempt n of script step path.
func RunbookJobWorkflowID(run, path string, n int) string {
	return fmt.Sprintf("%s:%s/%s#%d", KindJob, run, path, n)
}

// RunbookTicketWorkflowID is the Approval of attempt n of approval step path.
func RunbookTicketWorkflowID(run, path string, n int) string {
	return fmt.Sprintf("%s:%s/%s#%d", KindApproval, run, path, n)
}

// RunbookChildWorkflowID is the child run of attempt n of runbook step path.
func RunbookChildWorkflowID(run, path string, n int) string {
	return fmt.Sprintf("%s:%s/%s#%d", KindRunbook, strings.TrimPrefix(run, KindRunbook+":"), path, n)
}

// RunbookChunkWorkflowID is chunk i of attempt n of foreach step path: a
// Runbook run of part of the foreach's items.
func RunbookChunkWorkflowID(run, path string, n, i int) string {
	return fmt.Sprintf("%s/%s#%d@%d", run, path, n, i)
}

// GitSyncWorkflowID is the sync of Git source name: one at a time per
// source, so a webhook arriving during a sync joins it.
func GitSyncWorkflowID(name string) string { return "gitsync:" + name }

// GitPlanWorkflowID is a dry run of source name: it writes nothing but
// its plan, so it runs beside a sync, and a push during a dry run does
// not join the dry run and go unapplied.
func GitPlanWorkflowID(name string) string { return "gitplan:" + name }

// GitSyncScheduleID is the Temporal schedule that syncs source name every
// interval.
func GitSyncScheduleID(name string) string { return "gitsync-schedule:" + name }
