package schema

import (
	"context"
	"fmt"
	"time"
)

func f64(v float64) *float64 { return &v }

// BuiltinTypes are the CI types every opsflow starts with. Admins may add
// attributes to them; they are seeded when missing, never overwritten.
var BuiltinTypes = []CIType{
	{Name: "host", Description: "A machine reachable over SSH: physical, virtual or cloud.", Attributes: []AttributeDef{
		{Name: "hostname", Type: AttrString},
		{Name: "address", Type: AttrString, Description: "Where to reach it: IP or DNS name, optionally :port"},
		{Name: "os", Type: AttrString},
		{Name: "os_version", Type: AttrString},
		{Name: "kernel", Type: AttrString},
		{Name: "cpu_count", Type: AttrInt, Min: f64(0)},
		{Name: "memory_mb", Type: AttrInt, Min: f64(0)},
		{Name: "disks", Type: AttrJSON},
		{Name: "ip_addresses", Type: AttrJSON},
		{Name: "listening_ports", Type: AttrJSON},
		{Name: "services", Type: AttrJSON},
		{Name: "ssh_host_key", Type: AttrString, Description: "Recorded on first contact; a changed key is not trusted"},
		{Name: "discovered_at", Type: AttrDatetime},
	}},
	{Name: "service", Description: "A process serving on a host.", Attributes: []AttributeDef{
		{Name: "port", Type: AttrInt, Min: f64(1), Max: f64(65535)},
		{Name: "protocol", Type: AttrEnum, Values: []string{"tcp", "udp", "http", "https", "grpc"}},
		{Name: "process", Type: AttrString},
		{Name: "version", Type: AttrString},
	}},
	{Name: "application", Description: "Software a team owns, made of services.", Attributes: []AttributeDef{
		{Name: "owner", Type: AttrString},
		{Name: "repository", Type: AttrString},
		{Name: "tier", Type: AttrEnum, Values: []string{"frontend", "backend", "batch", "data"}},
	}},
	{Name: "database", Description: "A database instance or cluster.", Attributes: []AttributeDef{
		{Name: "engine", Type: AttrEnum, Values: []string{"postgres", "mysql", "mariadb", "redis", "mongodb", "other"}, Required: true, Default: "other"},
		{Name: "version", Type: AttrString},
		{Name: "endpoint", Type: AttrString},
		{Name: "port", Type: AttrInt, Min: f64(1), Max: f64(65535)},
	}},
	{Name: "k8s_cluster", Description: "A Kubernetes cluster.", Attributes: []AttributeDef{
		{Name: "api_server", Type: AttrString},
		{Name: "version", Type: AttrString},
		{Name: "region", Type: AttrString},
	}},
	{Name: "network_zone", Description: "A network segment; SSH workers run one per zone.", Attributes: []AttributeDef{
		{Name: "cidr", Type: AttrCIDR, Unique: true},
		{Name: "vlan", Type: AttrInt, Min: f64(1), Max: f64(4094)},
		{Name: "gateway", Type: AttrIP},
	}},
}

// BuiltinRelationTypes are the relation types every opsflow starts with.
var BuiltinRelationTypes = []RelationType{
	{Name: "runs_on", Description: "service runs_on host", Cardinality: ManyToMany, Acyclic: true, Impact: true},
	{Name: "depends_on", Description: "application depends_on database", Cardinality: ManyToMany, Acyclic: true, Impact: true},
	{Name: "member_of", Description: "host member_of network_zone", Cardinality: ManyToMany, Acyclic: true, Impact: true},
	{Name: "connects_to", Description: "service connects_to service (traffic, not dependency)", Cardinality: ManyToMany, Acyclic: false, Impact: false},
	{Name: "deployed_to", Description: "application deployed_to k8s_cluster", Cardinality: ManyToOne, Acyclic: true, Impact: true},
}

// seedCMDB inserts missing built-in types; it runs after migrations.
func (s *Store) seedCMDB(ctx context.Context) error {
	now := time.Now().UTC()
	for _, t := range BuiltinTypes {
		t := t
		t.Builtin, t.Version, t.CreatedAt, t.UpdatedAt = true, 1, now, now
		if _, err := s.DB.NewInsert().Model(&t).On("CONFLICT (name) DO NOTHING").Exec(ctx); err != nil {
			return fmt.Errorf("seed ci type %s: %w", t.Name, err)
		}
	}
	for _, r := range BuiltinRelationTypes {
		r := r
		r.Builtin, r.CreatedAt = true, now
		if _, err := s.DB.NewInsert().Model(&r).On("CONFLICT (name) DO NOTHING").Exec(ctx); err != nil {
			return fmt.Errorf("seed relation type %s: %w", r.Name, err)
		}
	}
	return nil
}
