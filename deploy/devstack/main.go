// Command devstack runs the whole of opsflow on a laptop in one process: a
// real Temporal server on SQLite with its Web UI, the opsflow API and web
// UI, and the workers. No Docker, no external database, no internet.
//
// It is its own Go module so that the app's module never links the
// Temporal server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/opsflow/opsflow/internal/app"
	"github.com/opsflow/opsflow/internal/secret"
	"github.com/opsflow/opsflow/workflows"
	"go.temporal.io/sdk/client"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

func run() error {
	temporalOnly := flag.Bool("temporal-only", false, "run only the Temporal server (used by the test harness)")
	noUI := flag.Bool("no-temporal-ui", false, "do not start the Temporal Web UI")
	flag.Parse()

	start := time.Now()
	cfg := app.ConfigFromEnv()
	log := app.NewLogger(cfg)
	ephemeral := os.Getenv("OPSFLOW_EPHEMERAL") == "1"
	tport, err := portEnv("OPSFLOW_TEMPORAL_PORT", 7233)
	if err != nil {
		return err
	}
	uiport, err := portEnv("OPSFLOW_TEMPORAL_UI_PORT", 8233)
	if err != nil {
		return err
	}
	if *noUI || *temporalOnly {
		uiport = 0
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The Temporal UI decodes opsflow's encrypted payloads through the
	// codec endpoint of the opsflow API, with the user's opsflow login.
	topts := temporalOptions{IP: "127.0.0.1", Port: tport, UIPort: uiport, Namespace: env("TEMPORAL_NAMESPACE", "default"),
		SearchAttributes: workflows.SearchAttributeTypes, Logger: log, UICodecEndpoint: "http://" + cfg.HTTPAddr + "/codec"}
	if !ephemeral {
		topts.DBFile = filepath.Join(dataDir, "temporal.db")
	}
	if _, port, err := net.SplitHostPort(cfg.HTTPAddr); err == nil {
		if p, err := strconv.Atoi(port); err == nil {
			topts.ReservedPorts = append(topts.ReservedPorts, p)
		}
	}
	ts, err := startTemporal(topts)
	if err != nil {
		return err
	}
	defer ts.Stop()
	temporalAddr := net.JoinHostPort(topts.IP, strconv.Itoa(tport))
	if *temporalOnly {
		fmt.Printf("temporal ready %s namespace=%s\n", temporalAddr, topts.Namespace)
		<-ctx.Done()
		return nil
	}

	if cfg.DatabaseURL == "" {
		if ephemeral {
			tmp, err := os.MkdirTemp("", "opsflow-ephemeral-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			cfg.DatabaseURL = filepath.Join(tmp, "opsflow.db")
		} else {
			cfg.DatabaseURL = filepath.Join(dataDir, "opsflow.db")
		}
	}
	// The dev stack keeps its own secret key next to its data.
	if os.Getenv("OPSFLOW_SECRET_KEY") == "" && os.Getenv("OPSFLOW_SECRET_KEY_FILE") == "" {
		keyFile := filepath.Join(dataDir, "secret.key")
		if _, err := os.Stat(keyFile); os.IsNotExist(err) {
			if err := os.WriteFile(keyFile, []byte(secret.NewKey()+"\n"), 0o600); err != nil {
				return fmt.Errorf("secret key: %w", err)
			}
		}
		os.Setenv("OPSFLOW_SECRET_KEY_FILE", keyFile)
	}
	if cfg.TemporalUIURL == "" && uiport != 0 {
		cfg.TemporalUIURL = "http://" + net.JoinHostPort(topts.IP, strconv.Itoa(uiport))
	}
	a, err := app.Open(ctx, cfg, log, &client.Options{HostPort: temporalAddr, Namespace: topts.Namespace})
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Migrate(ctx); err != nil {
		return err
	}
	if err := a.Bootstrap(ctx, os.Getenv("OPSFLOW_DEV_ADMIN_TOKEN"), os.Stdout); err != nil {
		return err
	}
	// A data dir from an older release lacks attributes added since.
	if err := a.EnsureSearchAttributes(ctx); err != nil {
		log.Warn("search attributes", "error", err)
	}
	stopWorkers, err := a.StartWorkers(workflows.TaskQueues)
	if err != nil {
		return err
	}
	defer stopWorkers()
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("opsflow http listener: %w", err)
	}
	fmt.Printf("opsflow:     http://%s  (API docs: /api/docs, health: /healthz)\n", ln.Addr())
	if cfg.TemporalUIURL != "" {
		fmt.Printf("temporal ui: %s\n", cfg.TemporalUIURL)
	}
	fmt.Printf("temporal:    %s namespace=%s\n", temporalAddr, topts.Namespace)
	fmt.Printf("data:        %s (app database: %s)\n", dataDir, redact(cfg.DatabaseURL))
	fmt.Printf("opsflow dev stack ready in %s\n", time.Since(start).Round(time.Millisecond))
	err = a.RunAPI(ctx, ln)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	slog.Info("dev stack stopping")
	return err
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func portEnv(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%s: want a port number, got %q", name, v)
	}
	return p, nil
}

// redact hides a password in a database URL.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		return u.Redacted()
	}
	return dsn
}
