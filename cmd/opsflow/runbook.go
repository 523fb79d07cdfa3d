package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/opsflow/opsflow/internal/runbook"
)

// runbookCmd runs `opsflow runbook validate|push`. validate is offline:
// it parses each file with the built-in step kinds. push sends a file to
// the API at OPSFLOW_URL with OPSFLOW_TOKEN: a new runbook, or a new
// version of the one its metadata.name names (the same source as the
// latest version changes nothing). Both print a bad document's errors one
// a line as FILE:LINE:COL: path: reason and fail.
func runbookCmd(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return errors.New("runbook: want validate or push")
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
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("runbook push: want one FILE")
		}
		c, err := newClient(getenv)
		if err != nil {
			return err
		}
		return c.push(ctx, fs.Arg(0), *comment, stdout)
	}
	return fmt.Errorf("runbook: unknown verb %q (want validate or push)", args[0])
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

// apiClient calls a running opsflow API.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

func newClient(getenv func(string) string) (*apiClient, error) {
	base, token := strings.TrimRight(getenv("OPSFLOW_URL"), "/"), getenv("OPSFLOW_TOKEN")
	if base == "" || token == "" {
		return nil, errors.New("OPSFLOW_URL (e.g. http://127.0.0.1:8080) and OPSFLOW_TOKEN (an API token) are required")
	}
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("OPSFLOW_URL %q: want http:// or https:// and a host", base)
	}
	return &apiClient{base: base, token: token, http: &http.Client{Timeout: time.Minute}}, nil
}

// apiError is the API's error body.
type apiError struct {
	Status  int
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields"`
	Details struct {
		Errors runbook.Errors `json:"errors"`
	} `json:"details"`
}

func (e *apiError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// do sends body as JSON and decodes a 2xx answer into out; any other
// answer is an *apiError.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	res, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	if res.StatusCode >= 300 {
		var env struct{ Error *apiError }
		if json.Unmarshal(data, &env) != nil || env.Error == nil {
			env.Error = &apiError{}
		}
		env.Error.Status = res.StatusCode
		return res.StatusCode, env.Error
	}
	return res.StatusCode, json.Unmarshal(data, out)
}

type version struct {
	Version int64  `json:"version"`
	SHA256  string `json:"sha256"`
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
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound && ae.Code == "not_found" {
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
