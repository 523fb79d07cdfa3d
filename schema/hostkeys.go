package schema

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/uptrace/bun"
)

// HostKey is a host's SSH key recorded on first contact, for a host that
// has no ssh_host_key in the CMDB: every host opsflow logs into is pinned.
// Via is the jump host credential it is reached through (0: directly).
type HostKey struct {
	bun.BaseModel `bun:"table:host_keys"`

	Address   string    `bun:"address,pk" json:"address"`
	Via       int64     `bun:"via,pk" json:"via"`
	Key       string    `bun:"host_key" json:"host_key"`
	CreatedAt time.Time `bun:"created_at" json:"created_at"`
}

// HostTarget names a host to pin: its canonical address and, when the
// job resolved it to one, its host CI.
type HostTarget struct {
	Address string
	CIID    *int64
}

// RecordedHostKeys returns the key each host must present, by address,
// in authorized_keys form: its CI's ssh_host_key when it has one, or the
// one recorded on first contact through via; hosts with neither are left
// out. This is the one lookup every SSH connection to a host goes by.
// A host without a CI is matched to a host CI by its canonical address.
func (s *Store) RecordedHostKeys(ctx context.Context, hosts []HostTarget, via int64) (map[string]string, error) {
	out := map[string]string{}
	if len(hosts) == 0 {
		return out, nil
	}
	ciOf := map[int64][]string{}
	var unresolved, addrs []string
	for _, h := range hosts {
		addrs = append(addrs, h.Address)
		if h.CIID != nil {
			ciOf[*h.CIID] = append(ciOf[*h.CIID], h.Address)
		} else {
			unresolved = append(unresolved, h.Address)
		}
	}
	if len(unresolved) > 0 {
		// CIs are written with canonical addresses; one written without
		// its default port is that port's too.
		spell := map[string]string{}
		for _, a := range unresolved {
			spell[a] = a
			if h, p, err := net.SplitHostPort(a); err == nil && p == strconv.Itoa(DefaultSSHPort) {
				spell[h] = a
			}
		}
		vals := make([]string, 0, len(spell))
		for v := range spell {
			vals = append(vals, v)
		}
		var rows []struct {
			CIID  int64  `bun:"ci_id"`
			Value string `bun:"value"`
		}
		if err := s.DB.NewSelect().Table("ci_attrs").Column("ci_id", "value").
			Where("type = 'host' AND name = 'address' AND value IN (?)", bun.In(vals)).Scan(ctx, &rows); err != nil {
			return nil, fmt.Errorf("store: host keys: %w", err)
		}
		for _, r := range rows {
			ciOf[r.CIID] = append(ciOf[r.CIID], spell[r.Value])
		}
	}
	if len(ciOf) > 0 {
		ids := make([]int64, 0, len(ciOf))
		for id := range ciOf {
			ids = append(ids, id)
		}
		var rows []struct {
			CIID  int64  `bun:"ci_id"`
			Value string `bun:"value"`
		}
		if err := s.DB.NewSelect().Table("ci_attrs").Column("ci_id", "value").
			Where("name = 'ssh_host_key' AND ci_id IN (?)", bun.In(ids)).Scan(ctx, &rows); err != nil {
			return nil, fmt.Errorf("store: host keys: %w", err)
		}
		for _, r := range rows {
			for _, a := range ciOf[r.CIID] {
				if r.Value != "" {
					out[a] = r.Value
				}
			}
		}
	}
	var recorded []HostKey
	if err := s.DB.NewSelect().Model(&recorded).Where("via = ? AND address IN (?)", via, bun.In(addrs)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: host keys: %w", err)
	}
	for _, k := range recorded {
		if _, ok := out[k.Address]; !ok {
			out[k.Address] = k.Key
		}
	}
	return out, nil
}

// RecordHostKey records key as the host's at address through via, unless
// one is recorded already, and returns the key recorded.
func (s *Store) RecordHostKey(ctx context.Context, address string, via int64, key string) (string, error) {
	k := &HostKey{Address: address, Via: via, Key: key, CreatedAt: time.Now().UTC()}
	if _, err := s.DB.NewInsert().Model(k).On("CONFLICT (address, via) DO NOTHING").Exec(ctx); err != nil {
		return "", fmt.Errorf("store: record host key of %s: %w", address, err)
	}
	var got HostKey
	if err := s.DB.NewSelect().Model(&got).Where("address = ? AND via = ?", address, via).Scan(ctx); err != nil {
		return "", fmt.Errorf("store: record host key of %s: %w", address, notFound(err))
	}
	return got.Key, nil
}

// HostKeys lists the keys recorded on first contact, by address.
func (s *Store) HostKeys(ctx context.Context, after string, limit int) ([]HostKey, error) {
	var ks []HostKey
	if err := s.DB.NewSelect().Model(&ks).Where("address > ?", after).OrderExpr("address, via").Limit(int64(clampLimit(limit))).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: host keys: %w", err)
	}
	return ks, nil
}

// ForgetHostKeys deletes the keys recorded for address (through any jump
// host), so the next contact records the host's key anew, and returns how
// many there were.
func (s *Store) ForgetHostKeys(ctx context.Context, address string) (int, error) {
	res, err := s.DB.NewDelete().Model((*HostKey)(nil)).Where("address = ?", address).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: forget host key of %s: %w", address, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
