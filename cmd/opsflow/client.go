package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/opsflow/opsflow/internal/runbook"
)

// apiClient calls a running opsflow API at OPSFLOW_URL with the API token
// in OPSFLOW_TOKEN. Every client command goes through it.
type apiClient struct {
	base  string
	token string
	http  *http.Client
	// poll is how often --wait asks again.
	poll time.Duration
}

// requestTimeout bounds one call; --wait makes many.
const requestTimeout = time.Minute

func newClient(getenv func(string) string) (*apiClient, error) {
	base, token := strings.TrimRight(getenv("OPSFLOW_URL"), "/"), getenv("OPSFLOW_TOKEN")
	if base == "" || token == "" {
		return nil, errors.New("OPSFLOW_URL (e.g. http://127.0.0.1:8080) and OPSFLOW_TOKEN (an API token) are required")
	}
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("OPSFLOW_URL %q: want http:// or https:// and a host", base)
	}
	return &apiClient{base: base, token: token, http: &http.Client{Timeout: requestTimeout}, poll: time.Second}, nil
}

// apiError is the API's error body:
// {"error":{"code","message","fields":{field: reason},"details"}}.
type apiError struct {
	Status  int
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields"`
	Details struct {
		Errors runbook.Errors `json:"errors"`
	} `json:"details"`
}

// Error is the message and status, then each field's reason on a line of
// its own, sorted by field.
func (e *apiError) Error() string {
	var b strings.Builder
	if e.Message == "" {
		fmt.Fprintf(&b, "HTTP %d", e.Status)
	} else {
		fmt.Fprintf(&b, "%s (HTTP %d)", e.Message, e.Status)
	}
	fields := make([]string, 0, len(e.Fields))
	for f := range e.Fields {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		fmt.Fprintf(&b, "\n  %s: %s", f, e.Fields[f])
	}
	return b.String()
}

// isNotFound says whether err is the API's 404 for a missing object.
func isNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound && ae.Code == "not_found"
}

// get decodes a 2xx answer to GET path into out.
func (c *apiClient) get(ctx context.Context, path string, out any) error {
	_, err := c.send(ctx, http.MethodGet, path, "", nil, out)
	return err
}

// do sends body as JSON and decodes a 2xx answer into out; any other
// answer is an *apiError. It returns the answer's status.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) (int, error) {
	return c.send(ctx, method, path, "", body, out)
}

// doOnce is do with an Idempotency-Key: the API answers a repeat with what
// the first request made (200 instead of 201), so a retried command never
// starts a second run.
func (c *apiClient) doOnce(ctx context.Context, method, path, key string, body, out any) (int, error) {
	return c.send(ctx, method, path, key, body, out)
}

func (c *apiClient) send(ctx context.Context, method, path, key string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
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
	if out == nil {
		return res.StatusCode, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return res.StatusCode, fmt.Errorf("%s %s: answer: %w", method, path, err)
	}
	return res.StatusCode, nil
}

// newIdempotencyKey is a random key for a request the user gave none for.
func newIdempotencyKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "cli-" + hex.EncodeToString(b)
}

// sleep waits d or until ctx is done, and says which.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
