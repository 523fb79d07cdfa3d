package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	"github.com/opsflow/opsflow/internal/runbook"
)

// runbookCmd runs `opsflow runbook validate|push|run`. validate is
// offline: it parses each file with the built-in step kinds. push sends a
// file to the API at OPSFLOW_URL with OPSFLOW_TOKEN: a new runbook, or a
// new version of the one its metadata.name names (the same source as the
// latest version changes nothing). Both print a bad document's errors one
// a line as FILE:LINE:COL: path: reason and fail. run starts a run (see
// runRunbook).
func runbookCmd(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return errors.New("runbook: want validate, push or run")
	}
	switch args[0] {
	case "validate":
		fs := flag.NewFlagSet("runbook validate", flag.ContinueOnError)
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			return errors.New("runbook validate: want one or more FILEs")
		}
		failed := 0
		for _, file := range fs.Args() {
			if err := validateFile(file, stdout); err != nil {
				failed++
			}
		}
		if failed > 0 {
			return fmt.Errorf("runbook validate: %d of %d files invalid", failed, fs.NArg())
		}
		return nil
	case "push":
		fs := flag.NewFlagSet("runbook push", flag.ContinueOnError)
		comment := fs.String("comment", "", "the version's comment")
		files, err := parseArgs(fs, args[1:])
		if err != nil {
			return err
		}
		if len(files) != 1 {
			return errors.New("runbook push: want one FILE")
		}
		c, err := newClient(getenv)
		if err != nil {
			return err
		}
		return c.push(ctx, files[0], *comment, stdout)
	case "run":
		fs := flag.NewFlagSet("runbook run", flag.ContinueOnError)
		version := fs.Int64("version", 0, "the version to run (default: the latest)")
		inputs := newValues()
		fs.Var(inputs.textFlag(), "input", "an input as NAME=VALUE, typed as the runbook declares it (repeat for more)")
		fs.Var(inputs.jsonFlag(), "input-json", "an input as NAME=JSON, sent as given (repeat for more)")
		key := fs.String("idempotency-key", "", "the same key never starts a second run (default: a random one)")
		wait := fs.Bool("wait", false, "follow the run to its end; exit non-zero unless it completes")
		names, err := parseArgs(fs, args[1:])
		if err != nil {
			return err
		}
		if len(names) != 1 {
			return errors.New("runbook run: want one NAME")
		}
		c, err := newClient(getenv)
		if err != nil {
			return err
		}
		return c.runRunbook(ctx, runbookRun{name: names[0], version: *version, inputs: inputs, key: *key, wait: *wait}, stdout)
	}
	return fmt.Errorf("runbook: unknown verb %q (want validate, push or run)", args[0])
}

// validateFile prints "FILE: ok", the file's errors one a line, or why it
// could not be read; it returns an error unless the file is valid.
func validateFile(file string, out io.Writer) error {
	src, err := os.ReadFile(file)
	if err == nil {
		_, err = runbook.Parse(src)
	}
	var errs runbook.Errors
	switch {
	case errors.As(err, &errs):
		printErrors(out, file, errs)
	case err != nil:
		fmt.Fprintln(out, err)
	default:
		fmt.Fprintf(out, "%s: ok\n", file)
	}
	return err
}

// printErrors writes errors as compilers do, for editors to jump to.
func printErrors(out io.Writer, file string, errs runbook.Errors) {
	for _, e := range errs {
		if e.Path == "" {
			fmt.Fprintf(out, "%s:%d:%d: %s\n", file, e.Line, e.Column, e.Reason)
		} else {
			fmt.Fprintf(out, "%s:%d:%d: %s: %s\n", file, e.Line, e.Column, e.Path, e.Reason)
		}
	}
}

type version struct {
	Version int64  `json:"version"`
	SHA256  string `json:"sha256"`
	Source  string `json:"source"`
}

// push adds file as the next version of its runbook, or creates the
// runbook when there is none.
func (c *apiClient) push(ctx context.Context, file, comment string, out io.Writer) error {
	src, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	name, _, ok := runbook.MetadataName(src)
	if !ok {
		// Without a name there is nowhere to push: say what is wrong.
		if _, err := runbook.Parse(src); err != nil {
			var errs runbook.Errors
			if errors.As(err, &errs) {
				printErrors(out, file, errs)
			}
		}
		return fmt.Errorf("runbook push %s: the document has no metadata.name", file)
	}
	body := map[string]string{"source": string(src), "comment": comment}
	var v version
	status, err := c.do(ctx, http.MethodPost, "/api/v1/runbooks/"+url.PathEscape(name)+"/versions", body, &v)
	var ae *apiError
	if isNotFound(err) {
		var created struct {
			Latest version `json:"latest"`
		}
		status, err = c.do(ctx, http.MethodPost, "/api/v1/runbooks", body, &created)
		if errors.As(err, &ae) && ae.Status == http.StatusConflict {
			// Created by someone else meanwhile: add to theirs.
			status, err = c.do(ctx, http.MethodPost, "/api/v1/runbooks/"+url.PathEscape(name)+"/versions", body, &v)
		} else if err == nil {
			fmt.Fprintf(out, "%s: created, version %d\n", name, created.Latest.Version)
			return nil
		}
	}
	if errors.As(err, &ae) && len(ae.Details.Errors) > 0 {
		printErrors(out, file, ae.Details.Errors)
	}
	if err != nil {
		return fmt.Errorf("runbook push %s: %w", file, err)
	}
	if status == http.StatusOK {
		fmt.Fprintf(out, "%s: unchanged, version %d\n", name, v.Version)
	} else {
		fmt.Fprintf(out, "%s: version %d\n", name, v.Version)
	}
	return nil
}

type runbookRun struct {
	name    string
	version int64
	inputs  *values
	key     string
	wait    bool
}

// runStep is a step of a runbook run as GET /api/v1/runs/{id} shows it.
type runStep struct {
	Path   string `json:"path"`
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Status string `json:"status"`
	Error  string `json:"error"`
}

// runState is a run as POST /api/v1/runbooks/{name}/runs and GET
// /api/v1/runs/{id} answer it.
type runState struct {
	ID         string          `json:"id"`
	Status     string          `json:"status"`
	Summary    string          `json:"summary"`
	Steps      []runStep       `json:"steps"`
	FailedStep json.RawMessage `json:"failed_step"`
	Paused     bool            `json:"paused"`
}

// runRunbook starts a run of a runbook version (the latest unless given)
// with an Idempotency-Key, its inputs typed as that version declares them,
// and with wait follows it to its end.
func (c *apiClient) runRunbook(ctx context.Context, r runbookRun, out io.Writer) error {
	path := "/api/v1/runbooks/" + url.PathEscape(r.name)
	var v version
	var err error
	if r.version > 0 {
		err = c.get(ctx, fmt.Sprintf("%s/versions/%d", path, r.version), &v)
	} else {
		var rb struct {
			Latest version `json:"latest"`
		}
		err = c.get(ctx, path, &rb)
		v = rb.Latest
	}
	if err != nil {
		return fmt.Errorf("runbook run %s: %w", r.name, err)
	}
	decls, known := runbookInputs(v.Source)
	if r.key == "" {
		r.key = newIdempotencyKey()
	}
	body := map[string]any{"version": v.Version, "inputs": r.inputs.resolve(decls, known)}
	var run runState
	status, err := c.doOnce(ctx, http.MethodPost, path+"/runs", r.key, body, &run)
	if err != nil {
		return fmt.Errorf("runbook run %s: %w", r.name, err)
	}
	again := ""
	if status == http.StatusOK {
		again = " (already started with this Idempotency-Key)"
	}
	fmt.Fprintf(out, "run %s of %s version %d: %s%s\n%s\n", run.ID, r.name, v.Version, run.Status, again, c.base+"/runs/"+url.PathEscape(run.ID))
	if !r.wait {
		return nil
	}
	return c.waitRun(ctx, run.ID, run.Status, out)
}

// Final run statuses, and the one of a run stopped at a failed step that
// waits for a retry from that step.
const (
	runCompleted     = "completed"
	runAwaitingRetry = "awaiting_retry"
)

var finalRunStatus = map[string]bool{runCompleted: true, "failed": true, "canceled": true, "terminated": true}

// waitRun polls a run until its status is final, printing each step's
// status and the run's as they change from status. Anything but completed
// is an error. Interrupted, it stops waiting and says how to cancel: the
// run goes on.
func (c *apiClient) waitRun(ctx context.Context, id, status string, out io.Writer) error {
	seen := map[string]string{}
	paused := false
	for {
		var run runState
		err := c.get(ctx, "/api/v1/runs/"+url.PathEscape(id), &run)
		if ctx.Err() != nil {
			return fmt.Errorf("stopped waiting; run %s goes on. Cancel it on %s/runs/%s or with:\n"+
				"  curl -X POST -H \"Authorization: Bearer $OPSFLOW_TOKEN\" %s/api/v1/runs/%s/cancel",
				id, c.base, url.PathEscape(id), c.base, url.PathEscape(id))
		}
		if err != nil {
			return fmt.Errorf("run %s: %w", id, err)
		}
		for _, s := range run.Steps {
			key := cmp.Or(s.Path, s.ID)
			if seen[key] == s.Status {
				continue
			}
			seen[key] = s.Status
			line := fmt.Sprintf("step %s (%s): %s", key, s.Kind, s.Status)
			if s.Error != "" {
				line += ": " + s.Error
			}
			fmt.Fprintln(out, line)
		}
		if run.Status != status {
			status = run.Status
			if !finalRunStatus[status] && status != runAwaitingRetry {
				fmt.Fprintf(out, "run %s: %s\n", id, status)
			}
		}
		if run.Paused != paused {
			paused = run.Paused
			fmt.Fprintf(out, "run %s: %s\n", id, map[bool]string{true: "paused", false: "resumed"}[paused])
		}
		switch {
		case status == runCompleted:
			fmt.Fprintf(out, "run %s completed%s\n", id, suffix(run.Summary))
			return nil
		case status == runAwaitingRetry:
			return fmt.Errorf("run %s: step %s failed; the run waits for a retry from that step on %s/runs/%s",
				id, stepName(run.FailedStep), c.base, url.PathEscape(id))
		case finalRunStatus[status]:
			return fmt.Errorf("run %s %s%s", id, status, suffix(run.Summary))
		}
		sleep(ctx, c.poll)
	}
}

// stepName prints failed_step: a path or id as a string, else its JSON.
func stepName(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var st runStep
	if json.Unmarshal(raw, &st) == nil && cmp.Or(st.Path, st.ID) != "" {
		return cmp.Or(st.Path, st.ID)
	}
	if len(raw) == 0 {
		return "(unnamed)"
	}
	return string(raw)
}

func suffix(summary string) string {
	if summary == "" {
		return ""
	}
	return ": " + summary
}
