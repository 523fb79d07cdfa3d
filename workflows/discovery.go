package workflows

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/opsflow/opsflow/activities"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// MaxDiscoveryHosts caps one discovery run; larger ranges are split into
// several runs (or schedules).
const MaxDiscoveryHosts = 1024

// DiscoverHostsInput names the hosts (addresses and/or one CIDR) and the
// credential to log in with.
type DiscoverHostsInput struct {
	Addresses    []string
	CIDR         string
	Port         int
	CredentialID int64
	Concurrency  int
	StartedBy    string
}

// HostFailure is a host discovery could not inspect, and why.
type HostFailure struct {
	Address string
	Reason  string
}

// DiscoverHostsResult sums up a discovery run; per-host failures are
// reported, not fatal.
type DiscoverHostsResult struct {
	Hosts     int
	Created   int
	Updated   int
	Unchanged int
	Failed    []HostFailure
}

// Targets expands addresses and a CIDR (its usable host addresses) into
// the list discovery visits, without duplicates.
func (in DiscoverHostsInput) Targets() ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, a := range in.Addresses {
		add(a)
	}
	if in.CIDR != "" {
		p, err := netip.ParsePrefix(in.CIDR)
		if err != nil {
			return nil, fmt.Errorf("cidr: %w", err)
		}
		p = p.Masked()
		first, last := p.Addr(), lastAddr(p)
		for a := first; p.Contains(a); a = a.Next() {
			// Skip network and broadcast addresses of IPv4 ranges wider than /31.
			if p.Addr().Is4() && p.Bits() < 31 && (a == first || a == last) {
				continue
			}
			add(a.String())
			if len(out) > MaxDiscoveryHosts {
				break
			}
		}
	}
	if len(out) > MaxDiscoveryHosts {
		return nil, fmt.Errorf("more than %d hosts; split the range", MaxDiscoveryHosts)
	}
	return out, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		bits := p.Bits() - i*8
		switch {
		case bits >= 8:
		case bits <= 0:
			b[i] = 0xff
		default:
			b[i] |= 0xff >> bits
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// DiscoverHosts inspects hosts over SSH with read-only commands and keeps
// their host CIs (and the services found on them) up to date. Every change
// is recorded as made by this run.
func DiscoverHosts(ctx workflow.Context, in DiscoverHostsInput) (DiscoverHostsResult, error) {
	r := &discoveryRun{in: in}
	if err := r.setup(ctx); err != nil {
		return DiscoverHostsResult{}, err
	}
	res, err := r.run(ctx)
	return res, finishRun(ctx, fmt.Sprintf("%d hosts: %d created, %d updated, %d unchanged, %d failed",
		res.Hosts, res.Created, res.Updated, res.Unchanged, len(res.Failed)), err)
}

type discoveryRun struct {
	in  DiscoverHostsInput
	res DiscoverHostsResult
}

// DiscoveryProgress is how far a discovery run is, for its page: hosts
// inspected so far of Total, and how many were recorded or failed.
type DiscoveryProgress struct {
	Total      int `json:"total"`
	Done       int `json:"done"`
	Discovered int `json:"discovered"`
	Failed     int `json:"failed"`
}

// setup answers the progress query; a query adds nothing to the history,
// so runs started before it replay unchanged.
func (r *discoveryRun) setup(ctx workflow.Context) error {
	return workflow.SetQueryHandler(ctx, QueryProgress, func() (DiscoveryProgress, error) {
		p := DiscoveryProgress{Total: r.res.Hosts, Discovered: r.res.Created + r.res.Updated + r.res.Unchanged, Failed: len(r.res.Failed)}
		p.Done = p.Discovered + p.Failed
		return p, nil
	})
}

func (r *discoveryRun) run(ctx workflow.Context) (DiscoverHostsResult, error) {
	targets, err := r.in.Targets() //workflowcheck:ignore net/netip interns zones with unique.Make, whose cleanup goroutine never touches workflow state
	if err != nil {
		return r.res, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeInvalidInput, nil)
	}
	r.res.Hosts = len(targets)
	conc := r.in.Concurrency
	if conc <= 0 {
		conc = 20
	}
	var ssh *activities.SSH
	var cmdb *activities.CMDB
	sshCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           TaskQueueSSH,
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, MaximumAttempts: 3,
			NonRetryableErrorTypes: []string{activities.ErrTypeHostKeyChanged, activities.ErrTypeInvalidInput},
		},
	})
	dbCtx := workflow.WithActivityOptions(ctx, dbActivity)

	// A sliding window of conc hosts in flight; each host's facts go to the
	// CMDB as soon as they arrive.
	sel := workflow.NewSelector(ctx)
	inFlight, next := 0, 0
	for next < len(targets) || inFlight > 0 {
		for inFlight < conc && next < len(targets) {
			addr := targets[next]
			next++
			inFlight++
			f := workflow.ExecuteActivity(sshCtx, ssh.DiscoverHost, activities.DiscoverHostInput{Address: addr, Port: r.in.Port, CredentialID: r.in.CredentialID})
			sel.AddFuture(f, func(f workflow.Future) {
				inFlight--
				var out activities.DiscoverHostResult
				if err := f.Get(ctx, &out); err != nil {
					r.res.Failed = append(r.res.Failed, HostFailure{Address: addr, Reason: rootCause(err)})
					return
				}
				var up activities.UpsertDiscoveredHostResult
				if err := workflow.ExecuteActivity(dbCtx, cmdb.UpsertDiscoveredHost, activities.UpsertDiscoveredHostInput{Facts: out.Facts, StartedBy: r.in.StartedBy}).Get(ctx, &up); err != nil {
					r.res.Failed = append(r.res.Failed, HostFailure{Address: addr, Reason: "recording in the CMDB: " + rootCause(err)})
					return
				}
				switch up.Op {
				case "created":
					r.res.Created++
				case "updated":
					r.res.Updated++
				default:
					r.res.Unchanged++
				}
			})
		}
		sel.Select(ctx)
		if ctx.Err() != nil {
			return r.res, ctx.Err()
		}
	}
	return r.res, nil
}

// rootCause is the innermost message of an activity failure.
func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
