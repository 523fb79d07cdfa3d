package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Activity option presets. Pick one; do not hand-roll timeouts per call.
var (
	// dbActivity writes the read model: quick, retried for a long time
	// because a database outage must delay the run, not fail it.
	dbActivity = workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
		},
	}

	// dbLocalActivity writes a read model from the workflow's own worker:
	// no task-queue round trip, for writes on a latency path.
	dbLocalActivity = workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
		},
	}

	// notifyActivity sends chat and email notices; a rate-limited channel
	// (a DingTalk robot) may hold one for up to a minute.
	notifyActivity = workflow.ActivityOptions{
		StartToCloseTimeout: 3 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
			MaximumAttempts:    5,
		},
	}

	// shortActivity is for quick side effects that should fail a run after
	// a few attempts.
	shortActivity = workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    30 * time.Second,
			MaximumAttempts:    5,
		},
	}

	// gitActivity fetches a repository and plans or applies a sync: a
	// fetch may take a while; the activity itself gives up on a failing
	// fetch after a few attempts and records why.
	gitActivity = workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    2 * time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
			MaximumAttempts:    5,
		},
	}
)
