package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// jobCmd runs `opsflow job run`: a script from the library, by name, over
// hosts picked by a CMDB selector or listed, through POST /api/v1/jobs.
func jobCmd(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	if len(args) == 0 || args[0] != "run" {
		return errors.New("job: want run")
	}
	fs := flag.NewFlagSet("job run", flag.ContinueOnError)
	var j jobRun
	fs.StringVar(&j.script, "script", "", "the script's name (required)")
	fs.Int64Var(&j.version, "version", 0, "the script version (default: the latest)")
	fs.StringVar(&j.selector, "selector", "", "the hosts: a CMDB label selector, e.g. env=prod,role=web")
	hosts := fs.String("hosts", "", "the hosts: addresses, comma-separated")
	j.params = newValues()
	fs.Var(j.params.textFlag(), "param", "a parameter as NAME=VALUE, typed as the script version declares it (repeat for more)")
	fs.Var(j.params.jsonFlag(), "param-json", "a parameter as NAME=JSON, sent as given (repeat for more)")
	fs.StringVar(&j.concurrency, "concurrency", "", "hosts at a time: N or N% (default: the API's, 10)")
	fs.StringVar(&j.credential, "credential", "", "the hosts' SSH login: a credential's name or ID")
	fs.StringVar(&j.transport, "transport", "", "ssh (default) or local (admins: on the SSH worker itself)")
	fs.StringVar(&j.key, "idempotency-key", "", "the same key never starts a second job (default: a random one)")
	fs.BoolVar(&j.wait, "wait", false, "follow the job to its end, printing each host's output as it finishes; exit non-zero unless it succeeds")
	rest, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	switch {
	case len(rest) > 0:
		return fmt.Errorf("job run: unexpected %q", rest[0])
	case j.script == "":
		return errors.New("job run: --script NAME is required")
	case (j.selector == "") == (*hosts == ""):
		return errors.New("job run: give --selector SEL or --hosts a,b (one of them)")
	}
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			j.hosts = append(j.hosts, h)
		}
	}
	c, err := newClient(getenv)
	if err != nil {
		return err
	}
	return c.runJob(ctx, j, stdout)
}

type jobRun struct {
	script, selector, concurrency, credential, transport, key string
	version                                                   int64
	hosts                                                     []string
	params                                                    *values
	wait                                                      bool
}

type named struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// jobState is a job as GET /api/v1/jobs/{id} answers it.
type jobState struct {
	ID      int64          `json:"id"`
	Status  string         `json:"status"`
	Total   int            `json:"total"`
	Counts  map[string]int `json:"counts"`
	Summary string         `json:"summary"`
}

// jobHost is a host of a job; Output only from the one-host endpoint.
type jobHost struct {
	Idx         int        `json:"idx"`
	Address     string     `json:"address"`
	State       string     `json:"state"`
	ExitCode    *int       `json:"exit_code"`
	StartedAt   *time.Time `json:"started_at"`
	EndedAt     *time.Time `json:"ended_at"`
	Error       string     `json:"error"`
	Output      string     `json:"output"`
	OutputBytes int64      `json:"output_bytes"`
	Truncated   bool       `json:"truncated"`
}

// Final job statuses; only succeeded is a success.
var finalJobStatus = map[string]bool{"succeeded": true, "failed": true, "aborted": true, "rejected": true}

// finishedHostStates are the states a host of a job does not leave.
var finishedHostStates = []string{"succeeded", "failed", "skipped"}

func (c *apiClient) runJob(ctx context.Context, j jobRun, out io.Writer) error {
	var scripts struct {
		Items []struct {
			named
			LatestVersion int64 `json:"latest_version"`
		} `json:"items"`
	}
	if err := c.get(ctx, "/api/v1/scripts", &scripts); err != nil {
		return fmt.Errorf("job run: scripts: %w", err)
	}
	var scriptID int64
	for _, s := range scripts.Items {
		if s.Name == j.script {
			scriptID = s.ID
			if j.version == 0 {
				j.version = s.LatestVersion
			}
		}
	}
	if scriptID == 0 {
		return fmt.Errorf("job run: no script is named %q", j.script)
	}
	var ver struct {
		Parameters []declared `json:"parameters"`
	}
	if err := c.get(ctx, fmt.Sprintf("/api/v1/scripts/%d/versions/%d", scriptID, j.version), &ver); err != nil {
		return fmt.Errorf("job run: script %s version %d: %w", j.script, j.version, err)
	}
	credID, err := c.credentialID(ctx, j.credential)
	if err != nil {
		return err
	}
	if j.key == "" {
		j.key = newIdempotencyKey()
	}
	req := map[string]any{
		"script_id":     scriptID,
		"version":       j.version,
		"params":        j.params.resolve(ver.Parameters, true),
		"targets":       map[string]any{"selector": j.selector, "hosts": j.hosts, "transport": j.transport},
		"credential_id": credID,
		"policy":        map[string]any{"concurrency": j.concurrency},
	}
	var job jobState
	status, err := c.doOnce(ctx, http.MethodPost, "/api/v1/jobs", j.key, req, &job)
	if err != nil {
		return fmt.Errorf("job run: %w", err)
	}
	again := ""
	if status == http.StatusOK {
		again = " (already started with this Idempotency-Key)"
	}
	fmt.Fprintf(out, "job %d: %s, %d hosts%s\n%s/jobs/%d\n", job.ID, job.Status, job.Total, again, c.base, job.ID)
	if !j.wait {
		return nil
	}
	return c.waitJob(ctx, job.ID, job.Status, out)
}

// credentialID resolves --credential: an ID, or a name among the
// credentials. Empty is 0: the API says when the job needs one.
func (c *apiClient) credentialID(ctx context.Context, ref string) (int64, error) {
	if ref == "" {
		return 0, nil
	}
	var creds struct {
		Items []named `json:"items"`
	}
	if err := c.get(ctx, "/api/v1/credentials", &creds); err != nil {
		return 0, fmt.Errorf("job run: credentials: %w", err)
	}
	for _, cr := range creds.Items {
		if cr.Name == ref {
			return cr.ID, nil
		}
	}
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil && id > 0 {
		return id, nil
	}
	return 0, fmt.Errorf("job run: no credential is named %q", ref)
}

// waitJob follows a job to its end. Each host's output is printed once the
// host has finished, in the order hosts finish: a block that starts with
// "== ADDRESS". A host list is read again only when the job's counts say
// more hosts finished. Anything but succeeded is an error. Interrupted, it
// stops waiting and says how to abort: the job goes on. Status changes
// from status are printed.
func (c *apiClient) waitJob(ctx context.Context, id int64, status string, out io.Writer) error {
	printed := map[int]bool{}
	for {
		var job jobState
		err := c.get(ctx, fmt.Sprintf("/api/v1/jobs/%d", id), &job)
		if err == nil && job.Status != status {
			status = job.Status
			if !finalJobStatus[status] {
				fmt.Fprintf(out, "job %d: %s\n", id, status)
			}
		}
		finished := 0
		for _, s := range finishedHostStates {
			finished += job.Counts[s]
		}
		if err == nil && finished > len(printed) {
			err = c.printFinishedHosts(ctx, id, printed, out)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stopped waiting; job %d goes on. Abort it on %s/jobs/%d or with:\n"+
				"  curl -X POST -H \"Authorization: Bearer $OPSFLOW_TOKEN\" %s/api/v1/jobs/%d/abort", id, c.base, id, c.base, id)
		}
		if err != nil {
			return fmt.Errorf("job %d: %w", id, err)
		}
		if finalJobStatus[job.Status] {
			counts := make([]string, 0, len(finishedHostStates))
			for _, s := range finishedHostStates {
				counts = append(counts, fmt.Sprintf("%d %s", job.Counts[s], s))
			}
			line := fmt.Sprintf("job %d %s: %s of %d hosts%s", id, job.Status, strings.Join(counts, ", "), job.Total, suffix(job.Summary))
			if job.Status == "succeeded" {
				fmt.Fprintln(out, line)
				return nil
			}
			return errors.New(line)
		}
		sleep(ctx, c.poll)
	}
}

// printFinishedHosts prints the finished hosts not printed yet, those that
// ended first first, each with its stored output.
func (c *apiClient) printFinishedHosts(ctx context.Context, id int64, printed map[int]bool, out io.Writer) error {
	var fresh []jobHost
	for _, state := range finishedHostStates {
		cursor := ""
		for {
			var page struct {
				Items      []jobHost `json:"items"`
				NextCursor string    `json:"next_cursor"`
			}
			q := url.Values{"state": {state}, "limit": {"1000"}, "cursor": {cursor}}
			if err := c.get(ctx, fmt.Sprintf("/api/v1/jobs/%d/hosts?%s", id, q.Encode()), &page); err != nil {
				return err
			}
			for _, h := range page.Items {
				if !printed[h.Idx] {
					fresh = append(fresh, h)
				}
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
	}
	sort.SliceStable(fresh, func(a, b int) bool {
		ea, eb := fresh[a].EndedAt, fresh[b].EndedAt
		if ea != nil && eb != nil && !ea.Equal(*eb) {
			return ea.Before(*eb)
		}
		return fresh[a].Idx < fresh[b].Idx
	})
	for _, h := range fresh {
		if h.State != "skipped" {
			if err := c.get(ctx, fmt.Sprintf("/api/v1/jobs/%d/hosts/%d", id, h.Idx), &h); err != nil {
				return err
			}
		}
		printHost(out, c.base, id, h)
		printed[h.Idx] = true
	}
	return nil
}

func printHost(out io.Writer, base string, job int64, h jobHost) {
	head := fmt.Sprintf("== %s (host %d) %s", h.Address, h.Idx, h.State)
	if h.ExitCode != nil {
		head += fmt.Sprintf(", exit %d", *h.ExitCode)
	}
	if h.StartedAt != nil && h.EndedAt != nil {
		head += ", " + h.EndedAt.Sub(*h.StartedAt).Round(time.Millisecond).String()
	}
	if h.Error != "" {
		head += ": " + h.Error
	}
	fmt.Fprintln(out, head)
	if h.Output != "" {
		fmt.Fprint(out, h.Output)
		if !strings.HasSuffix(h.Output, "\n") {
			fmt.Fprintln(out)
		}
	}
	if h.Truncated {
		fmt.Fprintf(out, "(output cut at the stored cap; %d bytes in all: %s/jobs/%d/hosts/%d)\n", h.OutputBytes, base, job, h.Idx)
	}
}
