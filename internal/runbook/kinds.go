package runbook

// The built-in step kinds. Argument names follow the API they end up in:
// a script step takes what a batch job takes (schema.JobRequest, with the
// script and credential named rather than numbered), an approval step
// names an approval policy, notify names a notifier channel.

func str(name, desc string) *Arg { return &Arg{Name: name, Type: ArgString, Description: desc} }
func req(a *Arg) *Arg            { a.Required = true; return a }
func integer(name, desc string, min int64) *Arg {
	return &Arg{Name: name, Type: ArgInt, Description: desc, Min: &min}
}
func boolean(name, desc string) *Arg  { return &Arg{Name: name, Type: ArgBool, Description: desc} }
func duration(name, desc string) *Arg { return &Arg{Name: name, Type: ArgDuration, Description: desc} }
func selector(name, desc string) *Arg { return &Arg{Name: name, Type: ArgSelector, Description: desc} }
func enum(name, desc string, values ...string) *Arg {
	return &Arg{Name: name, Type: ArgEnum, Description: desc, Values: values}
}
func listOf(name, desc string, items *Arg) *Arg {
	return &Arg{Name: name, Type: ArgList, Description: desc, Items: items}
}
func mapOf(name, desc string, items *Arg) *Arg {
	return &Arg{Name: name, Type: ArgMap, Description: desc, Items: items}
}
func object(name, desc string, fields ...*Arg) *Arg {
	return &Arg{Name: name, Type: ArgObject, Description: desc, Fields: fields}
}
func anyArg(name, desc string) *Arg { return &Arg{Name: name, Type: ArgAny, Description: desc} }
func steps(name, desc string) *Arg  { return &Arg{Name: name, Type: ArgSteps, Description: desc} }

// Notifier channels, as internal/notify names them ("web" is the inbox).
var notifyChannels = []string{"web", "email", "slack", "dingtalk", "wecom", "feishu"}

func builtinKinds() []*Kind {
	targets := object("targets", "the hosts: a CMDB selector or a list of hosts",
		selector("selector", "host CIs matching this label selector"),
		listOf("hosts", "host names or addresses", &Arg{Type: ArgString}),
		enum("transport", "ssh (the default) or local, on the SSH worker", "ssh", "local"))
	targets.Required = true
	targets.OneOf = [][]string{{"selector", "hosts"}}
	policy := object("policy", "how the job runs over its hosts (schema.JobPolicy)",
		str("concurrency", "N or N% of the hosts at once"),
		str("batch", "rolling batches: N, N% or +N"),
		boolean("pause_after_first_batch", "wait for a resume after the first batch"),
		str("max_failures", "error budget: N or N%"),
		duration("host_timeout", "bound on one host"),
		duration("job_timeout", "bound on the whole job"),
		str("approval", "approval policy gating the job"))
	itemSteps := req(steps("steps", "the body, run once per item with item and index set"))
	itemSteps.Loop = true

	return []*Kind{
		{
			Name:        "script",
			Description: "Run a library script over hosts as a batch job.",
			Args: []*Arg{
				req(str("script", "script name")),
				integer("version", "script version; 0 or absent: the latest", 0),
				mapOf("params", "script parameters by name", &Arg{Type: ArgAny}),
				targets,
				str("credential", "credential name; absent: the one the host's scope selects"),
				policy,
			},
			Outputs: []Output{
				{"job_id", OutInt, "the batch job"},
				{"total", OutInt, "hosts in the job"},
				{"succeeded", OutInt, "hosts that succeeded"},
				{"failed", OutInt, "hosts that failed"},
			},
		},
		{
			Name:        "approval",
			Description: "Open an approval ticket under a policy and wait for its decision; a rejection fails the step.",
			Args: []*Arg{
				req(str("policy", "approval policy name")),
				req(str("title", "what is asked")),
				str("description", "details for the approvers"),
			},
			Outputs: []Output{
				{"ticket_id", OutInt, "the ticket"},
				{"decision", OutString, "approved, rejected or expired"},
				{"decided_by", OutList, "who decided"},
			},
		},
		{
			Name:        "parallel",
			Description: "Run branches of steps at the same time; it fails when a branch fails.",
			Args: []*Arg{
				{Name: "branches", Type: ArgList, Required: true, Description: "the branches", Min: ptr(int64(2)),
					Items: object("", "", str("name", "branch name"), req(steps("steps", "the branch's steps")))},
				boolean("fail_fast", "cancel the other branches when one fails"),
			},
		},
		{
			Name:        "foreach",
			Description: "Run a body of steps once per item of a list or per CI matching a selector.",
			Args: []*Arg{
				listOf("items", "the items", &Arg{Type: ArgAny}),
				selector("selector", "CIs matching this label selector (item is the CI)"),
				str("type", "CI type for selector (default host)"),
				integer("concurrency", "items at once (default 1)", 1),
				str("max_failures", "error budget: N or N% of the items; absent: stop at the first"),
				itemSteps,
			},
			OneOf: [][]string{{"items", "selector"}},
			Outputs: []Output{
				{"total", OutInt, "items"},
				{"succeeded", OutInt, "items whose body succeeded"},
				{"failed", OutInt, "items whose body failed"},
			},
		},
		{
			Name:        "runbook",
			Description: "Run another runbook as a child run.",
			Args: []*Arg{
				req(str("name", "runbook name")),
				integer("version", "runbook version; 0 or absent: the latest", 0),
				mapOf("inputs", "its inputs", &Arg{Type: ArgAny}),
			},
			Outputs: []Output{
				{"run_id", OutString, "the child run"},
				{"status", OutString, "its final status"},
			},
		},
		{
			Name:        "http",
			Description: "Send an HTTP request and check the response status.",
			Args: []*Arg{
				req(str("url", "http:// or https:// URL")),
				enum("method", "default GET", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"),
				mapOf("headers", "request headers", &Arg{Type: ArgString}),
				anyArg("body", "request body: a string as is, anything else as JSON"),
				str("credential", "credential whose secret authenticates the request"),
				listOf("expect_status", "statuses that succeed (default any 2xx)", &Arg{Type: ArgInt, Min: ptr(int64(100))}),
			},
			Outputs: []Output{
				{"status", OutInt, "response status"},
				{"body", OutDyn, "response body: JSON decoded, else a string"},
				{"headers", OutMap, "response headers"},
			},
		},
		{
			Name:        "notify",
			Description: "Send a message through a notifier.",
			Args: []*Arg{
				req(enum("channel", "notifier", notifyChannels...)),
				listOf("to", "users or groups", &Arg{Type: ArgString}),
				str("title", "subject"),
				req(str("message", "text")),
			},
		},
		{
			Name:        "wait",
			Description: "Wait for a duration or until a time.",
			Args: []*Arg{
				duration("duration", "how long"),
				str("until", "an RFC 3339 time"),
			},
			OneOf: [][]string{{"duration", "until"}},
		},
		{
			Name:        "cmdb.query",
			Description: "List CIs.",
			Args: []*Arg{
				str("type", "CI type"),
				selector("selector", "label selector"),
				mapOf("attrs", "attribute filters", &Arg{Type: ArgString}),
				integer("limit", "at most this many (default 1000)", 1),
			},
			Outputs: []Output{
				{"items", OutList, "the CIs"},
				{"count", OutInt, "how many"},
			},
		},
		{
			Name:        "cmdb.update",
			Description: "Set labels and attributes of CIs; their history links to the run.",
			Args: []*Arg{
				str("ci", "one CI by name"),
				selector("selector", "every CI matching this label selector"),
				str("type", "CI type"),
				mapOf("labels", "labels to set", &Arg{Type: ArgString}),
				listOf("remove_labels", "labels to remove", &Arg{Type: ArgString}),
				mapOf("attributes", "attributes to set", &Arg{Type: ArgAny}),
			},
			OneOf: [][]string{{"ci", "selector"}},
			Outputs: []Output{
				{"updated", OutInt, "CIs changed"},
			},
			Check: func(with map[string]any, report func(arg, reason string)) {
				if with["labels"] == nil && with["remove_labels"] == nil && with["attributes"] == nil {
					report("", "give labels, remove_labels or attributes")
				}
			},
		},
		{
			Name:        "fail",
			Description: "Fail the run with a message.",
			Args:        []*Arg{req(str("message", "why"))},
		},
	}
}

func ptr[T any](v T) *T { return &v }
