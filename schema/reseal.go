package schema

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

// Sealer is what Reseal needs of a keyring (internal/secret.Keyring).
type Sealer interface {
	// Stale reports whether sealed was made with a key other than the
	// primary one.
	Stale(sealed string) bool
	Open(sealed, context string) ([]byte, error)
	Seal(plaintext []byte, context string) string
}

// ResealReport counts what Reseal found and re-sealed.
type ResealReport struct {
	Checked  int // sealed values looked at
	Resealed int // values sealed with an old key, now with the primary
}

// Reseal re-seals, with the primary key, every stored secret sealed with
// an older one: credentials' secrets and passphrases, jobs' and job
// schedules' parameters.
// It runs in one transaction; with dryRun it only counts. A value no key
// opens fails the whole run, naming its row, and nothing is written.
func (s *Store) Reseal(ctx context.Context, keys Sealer, dryRun bool) (ResealReport, error) {
	var rep ResealReport
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		redo := func(what, sealed, sctx string) (string, error) {
			if sealed == "" {
				return "", nil
			}
			rep.Checked++
			if !keys.Stale(sealed) {
				return sealed, nil
			}
			pt, err := keys.Open(sealed, sctx)
			if err != nil {
				return "", fmt.Errorf("%s: %w", what, err)
			}
			rep.Resealed++
			return keys.Seal(pt, sctx), nil
		}
		var creds []Credential
		if err := tx.NewSelect().Model(&creds).Order("id").Scan(ctx); err != nil {
			return err
		}
		for _, c := range creds {
			before := rep.Resealed
			sec, err := redo("credential "+c.Name, c.Secret, c.SealContext())
			if err != nil {
				return err
			}
			pass, err := redo("credential "+c.Name+" passphrase", c.Passphrase, c.SealContext())
			if err != nil {
				return err
			}
			if rep.Resealed == before || dryRun {
				continue
			}
			if _, err := tx.NewUpdate().Model((*Credential)(nil)).Set("secret = ?", sec).Set("passphrase = ?", pass).
				Where("id = ?", c.ID).Exec(ctx); err != nil {
				return err
			}
		}
		var jobs []Job
		if err := tx.NewSelect().Model(&jobs).Column("id", "workflow_id", "params").Where("params <> ''").Order("id").Scan(ctx); err != nil {
			return err
		}
		for _, j := range jobs {
			before := rep.Resealed
			p, err := redo(fmt.Sprintf("job %d parameters", j.ID), j.Params, j.ParamsContext())
			if err != nil {
				return err
			}
			if rep.Resealed == before || dryRun {
				continue
			}
			if _, err := tx.NewUpdate().Model((*Job)(nil)).Set("params = ?", p).Where("id = ?", j.ID).Exec(ctx); err != nil {
				return err
			}
		}
		var scheds []JobSchedule
		if err := tx.NewSelect().Model(&scheds).Column("name", "params").Where("params <> ''").Order("name").Scan(ctx); err != nil {
			return err
		}
		for _, js := range scheds {
			before := rep.Resealed
			p, err := redo("job schedule "+js.Name+" parameters", js.Params, js.ParamsContext())
			if err != nil {
				return err
			}
			if rep.Resealed == before || dryRun {
				continue
			}
			if _, err := tx.NewUpdate().Model((*JobSchedule)(nil)).Set("params = ?", p).Where("name = ?", js.Name).Exec(ctx); err != nil {
				return err
			}
		}
		var rscheds []RunbookSchedule
		if err := tx.NewSelect().Model(&rscheds).Column("name", "inputs").Where("inputs <> ''").Order("name").Scan(ctx); err != nil {
			return err
		}
		for _, rs := range rscheds {
			before := rep.Resealed
			in, err := redo("runbook schedule "+rs.Name+" inputs", rs.Inputs, rs.InputsContext())
			if err != nil {
				return err
			}
			if rep.Resealed == before || dryRun {
				continue
			}
			if _, err := tx.NewUpdate().Model((*RunbookSchedule)(nil)).Set("inputs = ?", in).Where("name = ?", rs.Name).Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return ResealReport{}, fmt.Errorf("store: reseal: %w", err)
	}
	return rep, nil
}
