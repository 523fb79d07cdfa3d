package schema

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// fieldBag collects field errors, keeping the first reason per field.
type fieldBag map[string]string

func (f fieldBag) add(field, reason string) {
	if _, ok := f[field]; !ok {
		f[field] = reason
	}
}

func (f fieldBag) err(msg string) error {
	if len(f) == 0 {
		return nil
	}
	return invalid(msg, f)
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*$`)

// ValidHostname reports whether s is a DNS host name.
func ValidHostname(s string) bool { return hostnameRE.MatchString(s) }

// ParseCount reads N or N% of total (at least 1 when total > 0).
func ParseCount(s string, total int) (int, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f <= 0 || f > 100 {
			return 0, errors.New("must be a percentage from 0 to 100, such as 10%")
		}
		return max(1, int(math.Ceil(f*float64(total)/100))), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, errors.New("must be a positive number or a percentage such as 10%")
	}
	return n, nil
}

// JobRequest defines a job: what to run, where, how.
type JobRequest struct {
	ScriptID     int64                      `json:"script_id"`
	Version      int64                      `json:"version"` // 0: the latest
	Params       map[string]json.RawMessage `json:"params"`
	Targets      JobTargets                 `json:"targets"`
	CredentialID int64                      `json:"credential_id"`
	Policy       JobPolicy                  `json:"policy"`
}

// MaxJobHosts bounds one job; BatchJob continues as new every 1,000 hosts.
const MaxJobHosts = 10000

// PlanJob checks a job request and resolves its targets (a selector is
// evaluated now) into hosts, returning the script version and the checked
// parameter values. Nothing is written; bad input is a ValidationError
// naming each field.
func (s *Store) PlanJob(ctx context.Context, req *JobRequest) (*ScriptVersion, map[string]string, []JobHost, error) {
	bad := fieldBag{}
	var ver *ScriptVersion
	sc, err := s.Script(ctx, req.ScriptID)
	if errors.Is(err, ErrNotFound) {
		bad.add("script_id", "no such script")
	} else if err != nil {
		return nil, nil, nil, err
	} else {
		if req.Version == 0 {
			req.Version = sc.LatestVersion
		}
		ver, err = s.ScriptVersion(ctx, sc.ID, req.Version)
		if errors.Is(err, ErrNotFound) {
			bad.add("version", fmt.Sprintf("script %d has no version %d", sc.ID, req.Version))
		} else if err != nil {
			return nil, nil, nil, err
		}
	}
	params := map[string]string{}
	if ver != nil {
		switch ver.Risk {
		case RiskBlocked:
			bad.add("version", "blocked by high-risk command rules: "+strings.Join(ver.RiskMatches, "; "))
		}
		known := map[string]bool{}
		for _, p := range ver.Parameters {
			known[p.Name] = true
			raw, given := req.Params[p.Name]
			if !given && p.Default != nil {
				raw, _ = json.Marshal(p.Default)
				given = true
			}
			if !given {
				if p.Required || p.Type == ParamSecret {
					bad.add("params."+p.Name, "required")
				}
				continue
			}
			v, err := p.Check(raw)
			if err != nil {
				bad.add("params."+p.Name, err.Error())
				continue
			}
			params[p.Name] = v
		}
		for k := range req.Params {
			if !known[k] {
				bad.add("params."+k, fmt.Sprintf("version %d has no parameter %s", ver.Version, k))
			}
		}
	}
	var cred *Credential // the hosts' login over SSH
	switch req.Targets.Transport {
	case "", TransportSSH:
		req.Targets.Transport = TransportSSH
		if req.CredentialID <= 0 {
			bad.add("credential_id", "required")
		} else if cr, err := s.Credential(ctx, req.CredentialID); errors.Is(err, ErrNotFound) {
			bad.add("credential_id", "no such credential")
		} else if err != nil {
			return nil, nil, nil, err
		} else if cr.Kind == CredLocal {
			req.Targets.Transport = TransportLocal
		} else if cr.Kind == CredJumpHost {
			bad.add("credential_id", "a jump_host credential logs into the bastion; give the hosts' credential (which names the jump host)")
		} else if cr.Kind == CredHTTP {
			bad.add("credential_id", "an http credential is sent by runbooks' http steps to its URLs; it logs into no host")
		} else {
			cred = cr
		}
	case TransportLocal:
		local, err := s.LocalCredential(ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		if req.CredentialID == 0 {
			req.CredentialID = local.ID
		} else if req.CredentialID != local.ID {
			bad.add("credential_id", "the local transport runs as the worker's user: leave it out, or give the local credential")
		}
	default:
		bad.add("targets.transport", "must be ssh or local")
	}
	p := &req.Policy
	if p.Concurrency == "" {
		p.Concurrency = "10"
	}
	if _, err := ParseCount(p.Concurrency, 1); err != nil {
		bad.add("policy.concurrency", err.Error())
	}
	if b := strings.TrimPrefix(p.Batch, "+"); p.Batch != "" {
		if _, err := ParseCount(b, 1); err != nil || (strings.HasPrefix(p.Batch, "+") && strings.HasSuffix(b, "%")) {
			bad.add("policy.batch", "must be N, N% or +N")
		}
	}
	if p.MaxFailures != "" {
		if _, err := ParseCount(p.MaxFailures, 1); err != nil && p.MaxFailures != "0" {
			bad.add("policy.max_failures", err.Error())
		}
	}
	for name, v := range map[string]string{"policy.host_timeout": p.HostTimeout, "policy.job_timeout": p.JobTimeout} {
		if v == "" {
			continue
		}
		if d, err := time.ParseDuration(v); err != nil || d < time.Second {
			bad.add(name, "must be a duration such as 10m, at least 1s")
		}
	}

	hosts, err := s.resolveTargets(ctx, req.Targets, bad)
	if err != nil {
		return nil, nil, nil, err
	}
	if cred != nil && len(bad) == 0 {
		// A credential goes only where it is meant to: the listed
		// addresses are named by their index, a selector's hosts by the
		// credential.
		fieldOf := func(int) string { return "targets.selector" }
		if len(req.Targets.Hosts) > 0 {
			fieldOf = func(i int) string { return fmt.Sprintf("targets.hosts[%d]", hosts[i].listed) }
		}
		cbad, err := s.CheckCredentialTargets(ctx, cred, jobHosts(hosts), fieldOf)
		if err != nil {
			return nil, nil, nil, err
		}
		for k, v := range cbad {
			bad.add(k, v)
		}
	}
	if len(hosts) == 0 && len(bad) == 0 {
		bad.add("targets", "empty target set: no host matches")
	}
	if len(hosts) > MaxJobHosts {
		bad.add("targets", fmt.Sprintf("%d hosts; a job takes at most %d", len(hosts), MaxJobHosts))
	}
	if len(bad) > 0 {
		return ver, params, jobHosts(hosts), bad.err("invalid job")
	}
	// Approval: a policy whose match fits gates the job; a version flagged
	// for approval runs only through one. It sees each host's CI however
	// its address was spelt.
	gate, err := s.GatingPolicy(ctx, ver, jobHosts(hosts))
	if err != nil {
		return nil, nil, nil, err
	}
	switch {
	case gate != nil:
		req.Policy.Approval = gate.Name
	case req.Policy.Approval != "":
		if _, err := s.ApprovalPolicyByName(ctx, req.Policy.Approval); errors.Is(err, ErrNotFound) {
			bad.add("policy.approval", "no such approval policy")
		} else if err != nil {
			return nil, nil, nil, err
		}
	case ver.Risk == RiskApproval:
		bad.add("version", "needs an approval (high-risk: "+strings.Join(ver.RiskMatches, "; ")+
			"), and no approval policy gates it: an admin must create one with match.script_risk=approval")
	}
	return ver, params, jobHosts(hosts), bad.err("invalid job")
}

// plannedHost is a resolved target and the index it was listed at.
type plannedHost struct {
	JobHost
	listed int
}

func jobHosts(ps []plannedHost) []JobHost {
	out := make([]JobHost, len(ps))
	for i, p := range ps {
		out[i] = p.JobHost
	}
	return out
}

// resolveTargets turns a job's targets into hosts, each once: a
// selector's host CIs at their canonical addresses, or the listed
// addresses made canonical (see CanonicalAddress) and matched to the host
// CI at that address, so that no spelling of an address escapes the
// gates and scopes on its CI. The local transport keeps the listed names
// (they only label its runs). Problems go into bad.
func (s *Store) resolveTargets(ctx context.Context, t JobTargets, bad fieldBag) ([]plannedHost, error) {
	local := t.Transport == TransportLocal
	var hosts []plannedHost
	switch {
	case t.Selector != "" && len(t.Hosts) > 0:
		bad.add("targets", "give a selector or hosts, not both")
	case t.Selector != "":
		if err := ValidateSelector(t.Selector); err != nil {
			bad.add("targets.selector", err.Error())
			break
		}
		cis, err := s.ExportCIs(ctx, CIQuery{Type: "host", Selector: t.Selector})
		if err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for _, ci := range cis {
			addr := ciAddress(ci.Name, ci.Attributes)
			if !local {
				c, err := CanonicalAddress(addr)
				if err != nil {
					bad.add("targets.selector", fmt.Sprintf("host CI %s has no usable address (%q: %v)", ci.Name, addr, err))
					continue
				}
				if seen[c] {
					continue
				}
				seen[c], addr = true, c
			}
			id := ci.ID
			hosts = append(hosts, plannedHost{JobHost: JobHost{Address: addr, CIID: &id}})
		}
	default:
		var byAddr map[string]int64
		if len(t.Hosts) > 0 {
			var err error
			if byAddr, err = s.HostCIsByAddress(ctx); err != nil {
				return nil, err
			}
		}
		seen := map[string]bool{}
		for i, h := range t.Hosts {
			c, err := CanonicalAddress(h)
			if err != nil {
				bad.add(fmt.Sprintf("targets.hosts[%d]", i), err.Error())
				continue
			}
			if seen[c] {
				continue
			}
			seen[c] = true
			jh := JobHost{Address: c}
			if local {
				jh.Address = h
			}
			if id, ok := byAddr[c]; ok {
				jh.CIID = &id
			}
			hosts = append(hosts, plannedHost{JobHost: jh, listed: i})
		}
	}
	return hosts, nil
}
