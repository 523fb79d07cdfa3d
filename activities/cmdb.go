package activities

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/opsflow/opsflow/schema"
	"go.temporal.io/sdk/activity"
)

// CMDB writes configuration items on behalf of workflows. Every change it
// makes carries the run's workflow ID into the CI's history, the change
// feed and the audit log.
type CMDB struct {
	Store *schema.Store
}

// UpsertDiscoveredHostInput is one host's facts from a discovery run.
type UpsertDiscoveredHostInput struct {
	Facts     HostFacts
	StartedBy string // the user the run acts for
}

// UpsertDiscoveredHostResult says what changed.
type UpsertDiscoveredHostResult struct {
	HostID   int64
	HostName string
	Op       string // created, updated or unchanged
	Services []string
}

// wellKnownPorts are services discovery recognises by their port.
var wellKnownPorts = map[int]struct{ name, protocol string }{
	22: {"ssh", "tcp"}, 80: {"http", "http"}, 443: {"https", "https"}, 3306: {"mysql", "tcp"},
	5432: {"postgres", "tcp"}, 6379: {"redis", "tcp"}, 27017: {"mongodb", "tcp"}, 2379: {"etcd", "grpc"},
	9090: {"prometheus", "http"}, 9093: {"alertmanager", "http"}, 8080: {"http-alt", "http"},
}

// UpsertDiscoveredHost creates or updates the host CI found at the facts'
// address (matched by its address attribute), and a service CI that
// runs_on it for every well-known listening port. Only real changes are
// written, so a rediscovery that finds nothing new leaves no history.
func (a *CMDB) UpsertDiscoveredHost(ctx context.Context, in UpsertDiscoveredHostInput) (UpsertDiscoveredHostResult, error) {
	info := activity.GetInfo(ctx)
	ch := schema.Change{Actor: in.StartedBy, RunID: info.WorkflowExecution.ID}
	f := in.Facts
	attrs := map[string]json.RawMessage{}
	set := func(k string, v any) {
		b, _ := json.Marshal(v)
		attrs[k] = b
	}
	set("address", f.Address)
	set("hostname", f.Hostname)
	set("os", f.OS)
	set("os_version", f.OSVersion)
	set("kernel", f.Kernel)
	set("cpu_count", f.CPUCount)
	set("memory_mb", f.MemoryMB)
	set("disks", nonNil(f.Disks))
	set("ip_addresses", nonNil(f.IPAddresses))
	set("listening_ports", nonNil(f.Ports))
	set("services", nonNil(f.Services))
	if f.HostKey != "" {
		set("ssh_host_key", f.HostKey)
	}

	res := UpsertDiscoveredHostResult{}
	// The host CI at this address, however its address was spelt (or its
	// name, when it has no address).
	byAddr, err := a.Store.HostCIsByAddress(ctx)
	if err != nil {
		return res, err
	}
	var host *schema.CI
	if id, ok := byAddr[schema.MustCanonicalAddress(f.Address)]; ok {
		old, err := a.Store.CI(ctx, id)
		if err != nil {
			return res, err // deleted meanwhile: the retry creates it
		}
		host, err = a.Store.UpdateCI(ctx, old.ID, old.Version, schema.CIPatch{Attributes: attrs}, ch)
		if err != nil {
			return res, err // a concurrent edit: the retry reads the new version
		}
		res.Op = "unchanged"
		if host.Version != old.Version {
			res.Op = "updated"
			a.audit(ctx, ch, "cmdb.ci.update", host.ID)
		}
	} else {
		name := f.Hostname
		if !schema.ValidCIName(name) {
			name = strings.NewReplacer("[", "", "]", "").Replace(f.Address)
		}
		host, err = a.Store.CreateCI(ctx, schema.CIInput{Type: "host", Name: name, Attributes: attrs}, ch)
		var conflict *schema.ConflictError
		if errors.As(err, &conflict) && conflict.Fields["name"] != "" {
			// Another host already has this hostname: keep both apart.
			host, err = a.Store.CreateCI(ctx, schema.CIInput{Type: "host", Name: name + "@" + f.Address, Attributes: attrs}, ch)
		}
		if err != nil {
			return res, err
		}
		res.Op = "created"
		a.audit(ctx, ch, "cmdb.ci.create", host.ID)
	}
	res.HostID, res.HostName = host.ID, host.Name

	seen := map[string]bool{}
	for _, p := range f.Ports {
		svc, ok := wellKnownPorts[p.Port]
		if !ok || seen[svc.name] {
			continue
		}
		seen[svc.name] = true
		name := host.Name + ":" + svc.name
		sc, err := a.Store.CIByName(ctx, "service", name)
		if errors.Is(err, schema.ErrNotFound) {
			sattrs := map[string]json.RawMessage{}
			sattrs["port"], _ = json.Marshal(p.Port)
			sattrs["protocol"], _ = json.Marshal(svc.protocol)
			sc, err = a.Store.CreateCI(ctx, schema.CIInput{Type: "service", Name: name, Attributes: sattrs}, ch)
			if err != nil {
				return res, err
			}
			a.audit(ctx, ch, "cmdb.ci.create", sc.ID)
		} else if err != nil {
			return res, err
		}
		rels, err := a.Store.Relations(ctx, schema.RelationFilter{CIID: sc.ID, Type: "runs_on"})
		if err != nil {
			return res, err
		}
		linked := false
		for _, r := range rels {
			linked = linked || (r.SourceID == sc.ID && r.TargetID == host.ID)
		}
		if !linked {
			r, err := a.Store.CreateRelation(ctx, "runs_on", sc.ID, host.ID, ch)
			if err != nil {
				return res, err
			}
			a.audit(ctx, ch, "cmdb.relation.create", r.ID)
		}
		res.Services = append(res.Services, svc.name)
	}
	return res, nil
}

func (a *CMDB) audit(ctx context.Context, ch schema.Change, action string, id int64) {
	kind := "ci:"
	if action == "cmdb.relation.create" {
		kind = "relation:"
	}
	e := &schema.AuditEntry{Actor: ch.Actor, Action: action, Target: kind + strconv.FormatInt(id, 10), Detail: "run " + ch.RunID, Status: 200}
	if err := a.Store.AppendAudit(ctx, e); err != nil {
		activity.GetLogger(ctx).Warn("audit append failed", "action", action, "error", err)
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
