package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
)

// approvalsCmd runs `opsflow approvals list|approve|reject`: the tickets
// that wait for the caller's decision (or all of them), and a vote through
// POST /api/v1/approvals/{id}/decision, which says at once whether it
// counted.
func approvalsCmd(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return errors.New("approvals: want list, approve or reject")
	}
	verb := args[0]
	fs := flag.NewFlagSet("approvals "+verb, flag.ContinueOnError)
	switch verb {
	case "list":
		all := fs.Bool("all", false, "every ticket, newest first, not only those waiting for my decision")
		status := fs.String("status", "", "only tickets in this status (pending, approved, rejected, …)")
		limit := fs.Int("limit", 50, "at most this many tickets")
		rest, err := parseArgs(fs, args[1:])
		if err != nil {
			return err
		}
		if len(rest) > 0 {
			return fmt.Errorf("approvals list: unexpected %q", rest[0])
		}
		c, err := newClient(getenv)
		if err != nil {
			return err
		}
		return c.listApprovals(ctx, *all, *status, *limit, stdout)
	case "approve", "reject":
		comment := fs.String("comment", "", "the decision's comment (required to reject)")
		key := fs.String("idempotency-key", "", "the same key counts the vote once (default: the same voter, level and decision count once)")
		rest, err := parseArgs(fs, args[1:])
		if err != nil {
			return err
		}
		if len(rest) != 1 {
			return fmt.Errorf("approvals %s: want one ticket ID", verb)
		}
		id, err := strconv.ParseInt(rest[0], 10, 64)
		if err != nil || id <= 0 {
			return fmt.Errorf("approvals %s: %q is not a ticket ID", verb, rest[0])
		}
		if verb == "reject" && *comment == "" {
			return errors.New("approvals reject: --comment TEXT is required: say why")
		}
		c, err := newClient(getenv)
		if err != nil {
			return err
		}
		return c.decide(ctx, id, verb, *comment, *key, stdout)
	}
	return fmt.Errorf("approvals: unknown verb %q (want list, approve or reject)", verb)
}

type ticket struct {
	ID         int64    `json:"id"`
	Title      string   `json:"title"`
	Requester  string   `json:"requester"`
	PolicyName string   `json:"policy_name"`
	Status     string   `json:"status"`
	Level      int      `json:"level"`
	Approvers  []string `json:"approvers"`
}

func (c *apiClient) listApprovals(ctx context.Context, all bool, status string, limit int, out io.Writer) error {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if !all {
		q.Set("mine", "to_decide")
	}
	if status != "" {
		q.Set("status", status)
	}
	var page struct {
		Items []ticket `json:"items"`
		Total int      `json:"total"`
	}
	if err := c.get(ctx, "/api/v1/approvals?"+q.Encode(), &page); err != nil {
		return fmt.Errorf("approvals list: %w", err)
	}
	if len(page.Items) == 0 {
		if all {
			fmt.Fprintln(out, "no tickets")
		} else {
			fmt.Fprintln(out, "nothing waits for your decision")
		}
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tLEVEL\tREQUESTER\tPOLICY\tTITLE")
	for _, t := range page.Items {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", t.ID, t.Status, t.Level+1, t.Requester, t.PolicyName, t.Title)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.Total > len(page.Items) {
		fmt.Fprintf(out, "(%d of %d; --limit for more, or %s/approvals)\n", len(page.Items), page.Total, c.base)
	}
	return nil
}

// decide votes on a ticket and prints what the vote did ("approved, 2 of
// 3").
func (c *apiClient) decide(ctx context.Context, id int64, decision, comment, key string, out io.Writer) error {
	var outcome struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	body := map[string]string{"decision": decision, "comment": comment}
	if _, err := c.doOnce(ctx, http.MethodPost, fmt.Sprintf("/api/v1/approvals/%d/decision", id), key, body, &outcome); err != nil {
		return fmt.Errorf("approvals %s %d: %w", decision, id, err)
	}
	fmt.Fprintf(out, "approval %d: %s (ticket %s)\n", id, outcome.Message, outcome.Status)
	return nil
}
