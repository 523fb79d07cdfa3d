package activities

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/opsflow/opsflow/internal/runbook"
	"github.com/opsflow/opsflow/schema"
	"gopkg.in/yaml.v3"
)

// GitAPIVersion is the apiVersion of the documents a Git source reads.
const GitAPIVersion = "opsflow/v1"

// GitKinds are the document kinds a Git source reads.
var GitKinds = []string{schema.KindRunbook, schema.KindScript, schema.KindApprovalPolicy, schema.KindRiskRule, schema.KindCMDBType}

// GitDocument is one object read from a repository, checked exactly as
// the API checks it.
type GitDocument struct {
	Kind string
	Name string
	File string
	// Desired state: the runbook's source, or the JSON of the other kinds'
	// spec (ScriptSpec, ApprovalPolicySpec, RiskRuleSpec, CMDBTypeSpec).
	Body []byte
}

// ScriptSpec is a Script document's spec: the body of POST
// /api/v1/scripts without the name (metadata.name).
type ScriptSpec struct {
	Description string            `json:"description"`
	Tags        []string          `json:"tags"`
	Content     string            `json:"content"`
	Interpreter string            `json:"interpreter"`
	Parameters  []schema.ParamDef `json:"parameters"`
	Comment     string            `json:"comment"`
}

// ApprovalPolicySpec is an ApprovalPolicy document's spec: the body of
// PUT /api/v1/approval-policies/{name} without the name.
type ApprovalPolicySpec struct {
	Description string                 `json:"description"`
	Levels      []schema.ApprovalLevel `json:"levels"`
	Channels    []string               `json:"channels"`
	Match       *schema.ApprovalMatch  `json:"match"`
}

// RiskRuleSpec is a RiskRule document's spec: the body of POST
// /api/v1/risk-rules. The pattern names the rule.
type RiskRuleSpec struct {
	Pattern     string `json:"pattern"`
	Action      string `json:"action"`
	Description string `json:"description"`
}

// CMDBTypeSpec is a CMDBType document's spec: the body of PUT
// /api/v1/cmdb/types/{name} without the name.
type CMDBTypeSpec struct {
	Description string                `json:"description"`
	Attributes  []schema.AttributeDef `json:"attributes"`
}

// DocumentError is a bad file: where and why.
type DocumentError struct {
	File   string
	Line   int
	Column int
	Path   string
	Reason string
}

func (e DocumentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d", e.File, e.Line)
	if e.Column > 0 {
		fmt.Fprintf(&b, ":%d", e.Column)
	}
	if e.Path != "" {
		b.WriteString(": " + e.Path)
	}
	return b.String() + ": " + e.Reason
}

// DocumentErrors are every bad file's errors, in file and line order.
type DocumentErrors []DocumentError

func (es DocumentErrors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// MaxGitFileBytes bounds one document, as the runbook parser does.
const MaxGitFileBytes = runbook.MaxSourceBytes

// ParseGitDocuments reads the documents among files (path → content):
// YAML files (.yaml, .yml) whose apiVersion is opsflow/v1; other files
// are not opsflow's. A file the API would refuse is a DocumentError.
func ParseGitDocuments(files map[string][]byte, reg *runbook.Registry) ([]GitDocument, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var docs []GitDocument
	var errs DocumentErrors
	seen := map[string]string{}
	for _, file := range names {
		ext := strings.ToLower(path.Ext(file))
		if ext != ".yaml" && ext != ".yml" {
			continue
		}
		d, err := parseGitDocument(file, files[file], reg)
		if err != nil {
			var des DocumentErrors
			if errors.As(err, &des) {
				errs = append(errs, des...)
			} else {
				errs = append(errs, DocumentError{File: file, Line: 1, Reason: err.Error()})
			}
			continue
		}
		if d == nil {
			continue
		}
		key := d.Kind + "/" + d.Name
		if other, dup := seen[key]; dup {
			errs = append(errs, DocumentError{File: file, Line: 1, Reason: fmt.Sprintf("%s %q is also defined in %s", d.Kind, d.Name, other)})
			continue
		}
		seen[key] = file
		docs = append(docs, *d)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return docs, nil
}

func parseGitDocument(file string, src []byte, reg *runbook.Registry) (*GitDocument, error) {
	bad := func(line int, p, format string, args ...any) error {
		return DocumentErrors{{File: file, Line: max(line, 1), Path: p, Reason: fmt.Sprintf(format, args...)}}
	}
	if len(src) > MaxGitFileBytes {
		return nil, bad(1, "", "larger than %d bytes", MaxGitFileBytes)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, bad(yamlErrLine(err), "", "invalid YAML: %v", err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, nil // not a document of ours
	}
	top := root.Content[0]
	if v := mapValue(top, "apiVersion"); v == nil || v.Value != GitAPIVersion {
		return nil, nil
	}
	kindNode := mapValue(top, "kind")
	if kindNode == nil {
		return nil, bad(top.Line, "kind", "required: one of %s", strings.Join(GitKinds, ", "))
	}
	kind := kindNode.Value
	if kind == schema.KindRunbook {
		return parseRunbookDocument(file, src, reg)
	}
	if !isGitKind(kind) {
		return nil, bad(kindNode.Line, "kind", "must be one of %s", strings.Join(GitKinds, ", "))
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if k := top.Content[i].Value; k != "apiVersion" && k != "kind" && k != "metadata" && k != "spec" {
			return nil, bad(top.Content[i].Line, k, "unknown field (want apiVersion, kind, metadata, spec)")
		}
	}
	spec := mapValue(top, "spec")
	if spec == nil {
		return nil, bad(top.Line, "spec", "required")
	}
	specLine := spec.Line
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "spec" {
			specLine = top.Content[i].Line
		}
	}
	var name string
	if md := mapValue(top, "metadata"); md != nil {
		if n := mapValue(md, "name"); n != nil {
			name = n.Value
		}
	}
	// YAML → JSON → the API's request type, unknown fields refused as the
	// API's decoder refuses them.
	var generic any
	if err := spec.Decode(&generic); err != nil {
		return nil, bad(spec.Line, "spec", "%v", err)
	}
	raw, err := json.Marshal(generic)
	if err != nil {
		return nil, bad(spec.Line, "spec", "not representable as JSON: %v", err)
	}
	decode := func(v any) error {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
				f, _ = strconv.Unquote(f)
				return bad(lineOf(spec, specLine, f), "spec."+f, "unknown field")
			}
			return bad(spec.Line, "spec", "%v", err)
		}
		return nil
	}
	// place turns the validator's field errors into file lines.
	place := func(err error, prefix string) error {
		var ve *schema.ValidationError
		if !errors.As(err, &ve) {
			return bad(spec.Line, "spec", "%v", err)
		}
		var es DocumentErrors
		for f, reason := range ve.Fields {
			switch {
			case f == "name" && kind != schema.KindRiskRule:
				es = append(es, DocumentError{File: file, Line: nameLine(top), Path: "metadata.name", Reason: reason})
			default:
				p := strings.TrimPrefix(prefix+f, "spec.")
				es = append(es, DocumentError{File: file, Line: lineOf(spec, specLine, p), Path: "spec." + p, Reason: reason})
			}
		}
		sort.Slice(es, func(i, j int) bool {
			return es[i].Line < es[j].Line || es[i].Line == es[j].Line && es[i].Path < es[j].Path
		})
		return es
	}
	d := &GitDocument{Kind: kind, Name: name, File: file}
	switch kind {
	case schema.KindScript:
		var s ScriptSpec
		if err := decode(&s); err != nil {
			return nil, err
		}
		if err := schema.ValidateScript(s.input(name)); err != nil {
			return nil, place(err, "")
		}
		d.Body, _ = json.Marshal(s)
	case schema.KindApprovalPolicy:
		var s ApprovalPolicySpec
		if err := decode(&s); err != nil {
			return nil, err
		}
		if err := schema.ValidateApprovalPolicy(s.policy(name)); err != nil {
			return nil, place(err, "")
		}
		d.Body, _ = json.Marshal(s)
	case schema.KindRiskRule:
		var s RiskRuleSpec
		if err := decode(&s); err != nil {
			return nil, err
		}
		if err := schema.ValidateRiskRule(&schema.RiskRule{Pattern: s.Pattern, Action: s.Action}); err != nil {
			return nil, place(err, "")
		}
		d.Name = s.Pattern
		d.Body, _ = json.Marshal(s)
	case schema.KindCMDBType:
		var s CMDBTypeSpec
		if err := decode(&s); err != nil {
			return nil, err
		}
		if err := schema.ValidateCIType(&schema.CIType{Name: name, Description: s.Description, Attributes: s.Attributes}); err != nil {
			return nil, place(err, "")
		}
		d.Body, _ = json.Marshal(s)
	}
	return d, nil
}

func (s ScriptSpec) input(name string) schema.ScriptInput {
	return schema.ScriptInput{Name: name, Description: s.Description, Tags: s.Tags, Content: s.Content,
		Interpreter: s.Interpreter, Parameters: s.Parameters, Comment: s.Comment}
}

func (s ApprovalPolicySpec) policy(name string) *schema.ApprovalPolicy {
	return &schema.ApprovalPolicy{Name: name, Description: s.Description,
		Spec: schema.ApprovalPolicySpec{Levels: s.Levels, Channels: s.Channels, Match: s.Match}}
}

// parseRunbookDocument checks a runbook as POST /api/v1/runbooks does.
func parseRunbookDocument(file string, src []byte, reg *runbook.Registry) (*GitDocument, error) {
	rb, err := reg.Parse(src)
	var rerrs runbook.Errors
	if errors.As(err, &rerrs) {
		es := make(DocumentErrors, len(rerrs))
		for i, e := range rerrs {
			es[i] = DocumentError{File: file, Line: max(e.Line, 1), Column: e.Column, Path: e.Path, Reason: e.Reason}
		}
		return nil, es
	}
	if err != nil {
		return nil, DocumentErrors{{File: file, Line: 1, Reason: err.Error()}}
	}
	in := schema.RunbookInput{Name: rb.Metadata.Name, Description: rb.Metadata.Description, Labels: rb.Metadata.Labels, Source: string(src)}
	if err := schema.ValidateRunbookInput(in); err != nil {
		line := 1
		if _, at, ok := runbook.MetadataName(src); ok {
			line = at.Line
		}
		return nil, DocumentErrors{{File: file, Line: line, Path: "metadata.name", Reason: err.Error()}}
	}
	return &GitDocument{Kind: schema.KindRunbook, Name: rb.Metadata.Name, File: file, Body: src}, nil
}

func isGitKind(k string) bool {
	for _, g := range GitKinds {
		if g == k {
			return true
		}
	}
	return false
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func nameLine(top *yaml.Node) int {
	if md := mapValue(top, "metadata"); md != nil {
		if n := mapValue(md, "name"); n != nil {
			return n.Line
		}
		return md.Line
	}
	return top.Line
}

var pathPart = regexp.MustCompile(`[^.\[\]]+|\[\d+\]`)

// lineOf finds the line of a field path such as parameters[0].name
// under n, as deep as the document goes; base when not even its first
// part is there.
func lineOf(n *yaml.Node, base int, p string) int {
	line := base
	for _, part := range pathPart.FindAllString(p, -1) {
		var next *yaml.Node
		if strings.HasPrefix(part, "[") {
			i, _ := strconv.Atoi(strings.Trim(part, "[]"))
			if n.Kind == yaml.SequenceNode && i < len(n.Content) {
				next = n.Content[i]
			}
		} else if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part {
					line, next = n.Content[i].Line, n.Content[i+1]
					break
				}
			}
		}
		if next == nil {
			break
		}
		n = next
		if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
			line = n.Line
		}
	}
	return max(line, 1)
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 1
}
