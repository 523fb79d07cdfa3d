// Command opsflow runs opsflow's API, workers and migrations against an
// external Temporal cluster and Postgres, and is a client of a running
// API (opsflow runbook|job|approvals …).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/opsflow/opsflow/internal/app"
	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/workflows"
)

const usage = `usage: opsflow <command> [flags]

commands:
  api                         serve the HTTP API and web UI (OPSFLOW_HTTP_ADDR)
  worker [--queues ops,ops-ssh]
                              run Temporal workers on the given task queues
  migrate up|down|status|unlock
                              manage the database schema
  secrets new-key             print a new random secret key (base64)
  secrets reseal [--dry-run]  re-seal every stored secret with the primary key, after a
                              rotation: OPSFLOW_SECRET_KEY=new, OPSFLOW_SECRET_OLD_KEYS=old
  version                     print the version

client commands (against a running API: OPSFLOW_URL, OPSFLOW_TOKEN; flags may follow arguments):
  runbook validate FILE...    check runbook documents offline; errors as FILE:LINE:COL: path: reason
  runbook push [--comment TEXT] FILE
                              create the runbook FILE names, or add FILE as its next version
                              (the same source as the latest version changes nothing)
  runbook run NAME [--version N] [--input k=v ...] [--input-json k=JSON ...] [--wait]
                              start a run; with --wait print each step's status as it changes
                              and exit non-zero unless the run completes
  job run --script NAME [--version N] (--selector SEL | --hosts a,b) [--param k=v ...]
          [--param-json k=JSON ...] [--credential NAME|ID] [--transport ssh|local]
          [--concurrency N|N%] [--wait]
                              run a script from the library on hosts; with --wait print each
                              host's output as it finishes, then a summary, and exit non-zero
                              unless the job succeeds
  approvals list [--all] [--status S] [--limit N]
                              the tickets waiting for my decision (--all: every ticket)
  approvals approve ID [--comment TEXT]
  approvals reject ID --comment TEXT
                              vote; prints whether it counted ("approved, 2 of 3")

  Values: k=v is typed as the script version or runbook declares k (an int or bool input
  gets 5 or true, a list input a,b,c; everything else stays a string, "8080" included);
  k=JSON is sent exactly as given, e.g. --input-json 'ports=[80,443]' --input-json 'tag="007"'.
  job run and runbook run send an Idempotency-Key (--idempotency-key KEY, default random):
  the same key again reports the first job or run instead of starting another.
  Ctrl-C during --wait stops waiting only; the run goes on (the message says how to cancel).

Environment: OPSFLOW_DATABASE_URL (required), OPSFLOW_SECRET_KEY or OPSFLOW_SECRET_KEY_FILE
(required by api and worker: 32 bytes, base64; OPSFLOW_SECRET_OLD_KEYS for rotation), TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY / TEMPORAL_TLS_* (see the Temporal SDK's envconfig), OPSFLOW_HTTP_ADDR,
OPSFLOW_TEMPORAL_UI_URL, OPSFLOW_LOG_LEVEL, OPSFLOW_LOG_FORMAT, OPSFLOW_METRICS_ADDR.
`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "opsflow:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("no command")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := app.ConfigFromEnv()
	log := app.NewLogger(cfg)

	switch args[0] {
	case "version":
		fmt.Println("opsflow", app.Version)
		return nil
	case "api":
		fs := flag.NewFlagSet("api", flag.ContinueOnError)
		addr := fs.String("addr", cfg.HTTPAddr, "listen address")
		migrate := fs.Bool("migrate", true, "apply pending migrations before serving")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		a, err := openWithKey(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer a.Close()
		if *migrate {
			if err := a.Migrate(ctx); err != nil {
				return err
			}
		}
		if err := a.Bootstrap(ctx, "", os.Stdout); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return err
		}
		log.Info("opsflow api listening", "addr", ln.Addr().String(), "version", app.Version)
		return a.RunAPI(ctx, ln)
	case "worker":
		fs := flag.NewFlagSet("worker", flag.ContinueOnError)
		queues := fs.String("queues", workflows.TaskQueueOps, "comma-separated task queues: "+strings.Join(workflows.TaskQueues, ","))
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		a, err := openWithKey(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer a.Close()
		stopWorkers, err := a.StartWorkers(strings.Split(*queues, ","))
		if err != nil {
			return err
		}
		defer stopWorkers()
		if cfg.MetricsAddr != "" {
			go func() {
				if err := a.ServeMetrics(ctx, cfg.MetricsAddr); err != nil {
					log.Error("metrics listener", "error", err)
				}
			}()
		}
		<-ctx.Done()
		log.Info("worker shutting down")
		return nil
	case "migrate":
		if len(args) < 2 {
			return errors.New("migrate: want up, down, status or unlock")
		}
		a, err := app.Open(ctx, cfg, log, nil)
		if err != nil {
			return err
		}
		defer a.Close()
		return migrate(ctx, a, args[1])
	case "secrets":
		return secrets(ctx, cfg, log, args[1:])
	case "runbook":
		return runbookCmd(ctx, args[1:], os.Stdout, os.Getenv)
	case "job":
		return jobCmd(ctx, args[1:], os.Stdout, os.Getenv)
	case "approvals":
		return approvalsCmd(ctx, args[1:], os.Stdout, os.Getenv)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func migrate(ctx context.Context, a *app.App, verb string) error {
	switch verb {
	case "up":
		if err := a.Migrate(ctx); err != nil {
			return err
		}
		if err := a.EnsureSearchAttributes(ctx); err != nil {
			a.Log.Warn("could not register search attributes; ask the cluster admin to add them", "error", err)
		}
		fmt.Println("migrations up to date")
	case "down":
		rolled, err := a.Store.MigrateDown(ctx)
		for _, m := range rolled {
			fmt.Println("rolled back", m)
		}
		return err
	case "status":
		st, err := a.Store.MigrationStatus(ctx)
		if err != nil {
			return err
		}
		for _, m := range st {
			state := "pending"
			if m.Applied {
				state = fmt.Sprintf("applied (group %d)", m.GroupID)
			}
			fmt.Printf("%s_%s\t%s\n", m.Name, m.Comment, state)
		}
	case "unlock":
		return a.Store.MigrateUnlock(ctx)
	default:
		return fmt.Errorf("migrate: unknown verb %q (want up, down, status or unlock)", verb)
	}
	return nil
}

// secrets rotates the key that seals stored secrets. Rotation: start every
// process with the new key as OPSFLOW_SECRET_KEY and the old one in
// OPSFLOW_SECRET_OLD_KEYS, run "opsflow secrets reseal", and keep the old
// key listed while Temporal still holds histories (or schedules) encoded
// with it.
func secrets(ctx context.Context, cfg app.Config, log *slog.Logger, args []string) error {
	if len(args) == 0 {
		return errors.New("secrets: want new-key or reseal")
	}
	switch args[0] {
	case "new-key":
		fmt.Println(secret.NewKey())
		return nil
	case "reseal":
		fs := flag.NewFlagSet("secrets reseal", flag.ContinueOnError)
		dry := fs.Bool("dry-run", false, "count what would be re-sealed, write nothing")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		a, err := openWithKey(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer a.Close()
		rep, err := a.Store.Reseal(ctx, a.Secrets, *dry)
		if err != nil {
			return err
		}
		verb := "re-sealed"
		if *dry {
			verb = "would re-seal"
		}
		fmt.Printf("%s %d of %d sealed values with the primary key\n", verb, rep.Resealed, rep.Checked)
		return nil
	}
	return fmt.Errorf("secrets: unknown verb %q (want new-key or reseal)", args[0])
}

// openWithKey opens the app for a command that needs the secret key.
func openWithKey(ctx context.Context, cfg app.Config, log *slog.Logger) (*app.App, error) {
	a, err := app.Open(ctx, cfg, log, nil)
	if err != nil {
		return nil, err
	}
	if a.Secrets == nil {
		a.Close()
		return nil, secret.ErrNoKey
	}
	return a, nil
}
