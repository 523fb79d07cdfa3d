// Package workers builds the Temporal workers that run opsflow's workflows
// and activities.
package workers

import (
	"fmt"
	"net/netip"

	"github.com/opsflow/opsflow/activities"
	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/schema"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
)

// Deps are the long-lived clients the activities hold.
type Deps struct {
	Store   *schema.Store
	Secrets *secret.Keyring
	// Notifiers send approval tickets to chat and email.
	Notifiers []activities.Notifier
	// LocalTransport runs local-transport jobs on this worker
	// (OPSFLOW_LOCAL_TRANSPORT=1); see activities.SSH.
	LocalTransport bool
	// RunbookSource reads stored runbooks for runbook steps (the runbook
	// store); nil refuses runbook steps.
	RunbookSource activities.RunbookSource
	// HTTPStepAllowNets are networks runbooks' http steps may reach
	// beyond the default (OPSFLOW_HTTP_STEP_ALLOW_NETS): by default not
	// the worker's loopback nor link-local addresses.
	HTTPStepAllowNets []netip.Prefix
	// GitCABundle adds certificate authorities for https:// Git sources
	// (OPSFLOW_GIT_CA_FILE).
	GitCABundle []byte
}

// New builds a worker for queue with every workflow and activity that queue
// serves registered on it. It returns nil when the queue has nothing to
// serve yet.
func New(c client.Client, queue string, deps Deps) (worker.Worker, error) {
	w := worker.New(c, queue, worker.Options{})
	n, err := Register(w, queue, deps)
	if err != nil || n == 0 {
		return nil, err
	}
	return w, nil
}

// Register registers what queue serves on r and returns how many
// workflows and activity structs that was.
func Register(r worker.Registry, queue string, deps Deps) (int, error) {
	switch queue {
	case workflows.TaskQueueOps:
		r.RegisterWorkflow(workflows.Demo)
		r.RegisterWorkflow(workflows.DiscoverHosts)
		r.RegisterWorkflow(workflows.BatchJob)
		r.RegisterWorkflow(workflows.ScheduledJob)
		r.RegisterWorkflow(workflows.ScheduledRunbook)
		r.RegisterWorkflow(workflows.Approval)
		r.RegisterWorkflow(workflows.Runbook)
		r.RegisterWorkflow(workflows.GitSync)
		r.RegisterActivity(&activities.Runs{Store: deps.Store})
		r.RegisterActivity(&activities.Git{Store: deps.Store, Secrets: deps.Secrets, CABundle: deps.GitCABundle})
		r.RegisterActivity(&activities.Demo{})
		r.RegisterActivity(&activities.CMDB{Store: deps.Store})
		r.RegisterActivity(&activities.Jobs{Store: deps.Store, Secrets: deps.Secrets})
		r.RegisterActivity(&activities.Approvals{Store: deps.Store, Notifiers: deps.Notifiers, Secrets: deps.Secrets})
		r.RegisterActivity(&activities.Runbooks{Store: deps.Store, Secrets: deps.Secrets, Notifiers: deps.Notifiers, Source: deps.RunbookSource, HTTPAllowNets: deps.HTTPStepAllowNets})
		return 15, nil
	case workflows.TaskQueueSSH:
		r.RegisterActivity(&activities.SSH{Store: deps.Store, Secrets: deps.Secrets, LocalTransport: deps.LocalTransport})
		return 1, nil
	}
	return 0, fmt.Errorf("workers: unknown task queue %q (known: %v)", queue, workflows.TaskQueues)
}
