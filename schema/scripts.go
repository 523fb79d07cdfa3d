package schema

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// Script interpreters.
var Interpreters = []string{"bash", "sh", "python3"}

// Parameter types of a script.
const (
	ParamString = "string"
	ParamInt    = "int"
	ParamBool   = "bool"
	ParamEnum   = "enum"
	ParamSecret = "secret"
)

// ParamDef declares a script parameter. Secret values are sealed wherever
// they are stored and never shown.
type ParamDef struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	Description string   `json:"description,omitempty"`
	Required    bool     `json:"required,omitempty"`
	Default     any      `json:"default,omitempty"`
	Regex       string   `json:"regex,omitempty"`
	Min         *float64 `json:"min,omitempty"`
	Max         *float64 `json:"max,omitempty"`
	Values      []string `json:"values,omitempty"`
}

// Risk levels of a script version.
const (
	RiskNone     = "none"
	RiskApproval = "approval"
	RiskBlocked  = "blocked"
)

// Script is a named, tagged script; its content lives in versions.
type Script struct {
	bun.BaseModel `bun:"table:scripts"`

	ID            int64     `bun:"id,pk,autoincrement" json:"id"`
	Name          string    `bun:"name" json:"name"`
	Description   string    `bun:"description" json:"description"`
	Tags          []string  `bun:"tags,type:text" json:"tags"`
	LatestVersion int64     `bun:"latest_version" json:"latest_version"`
	CreatedBy     string    `bun:"created_by" json:"created_by"`
	CreatedAt     time.Time `bun:"created_at" json:"created_at"`
	UpdatedAt     time.Time `bun:"updated_at" json:"updated_at"`
}

// ScriptVersion is one immutable version of a script.
type ScriptVersion struct {
	bun.BaseModel `bun:"table:script_versions"`

	ScriptID    int64      `bun:"script_id,pk" json:"script_id"`
	Version     int64      `bun:"version,pk" json:"version"`
	Content     string     `bun:"content" json:"content"`
	Interpreter string     `bun:"interpreter" json:"interpreter"`
	Parameters  []ParamDef `bun:"parameters,type:text" json:"parameters"`
	Risk        string     `bun:"risk" json:"risk"`
	RiskMatches []string   `bun:"risk_matches,type:text" json:"risk_matches"`
	Comment     string     `bun:"comment" json:"comment"`
	Author      string     `bun:"author" json:"author"`
	CreatedAt   time.Time  `bun:"created_at" json:"created_at"`
}

// RiskRule is a high-risk command pattern.
type RiskRule struct {
	bun.BaseModel `bun:"table:risk_rules"`

	ID          int64     `bun:"id,pk,autoincrement" json:"id"`
	Pattern     string    `bun:"pattern" json:"pattern"`
	Action      string    `bun:"action" json:"action"` // block or approval
	Description string    `bun:"description" json:"description"`
	Builtin     bool      `bun:"builtin" json:"builtin"`
	CreatedBy   string    `bun:"created_by" json:"created_by"`
	CreatedAt   time.Time `bun:"created_at" json:"created_at"`
}

// BuiltinRiskRules are checked unless an admin deletes them.
var BuiltinRiskRules = []RiskRule{
	{Pattern: `rm\s+(-[a-zA-Z]*[rf][a-zA-Z]*\s+)+(/|/\*|~|\$HOME)(\s|;|$)`, Action: "block", Description: "recursive delete of / or a home directory"},
	{Pattern: `\bmkfs(\.[a-z0-9]+)?\b`, Action: "block", Description: "formats a filesystem"},
	{Pattern: `\bdd\b[^\n]*\bof=/dev/`, Action: "block", Description: "writes a raw device"},
	{Pattern: `:\(\)\s*\{\s*:\|:&\s*\};:`, Action: "block", Description: "fork bomb"},
	{Pattern: `\b(shutdown|reboot|halt|poweroff)\b`, Action: "approval", Description: "stops or restarts the host"},
}

var paramNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// ValidateParamDefs checks parameter definitions, keyed "parameters[i].field".
func ValidateParamDefs(defs []ParamDef) map[string]string {
	bad := map[string]string{}
	seen := map[string]bool{}
	for i, d := range defs {
		f := func(s string) string { return fmt.Sprintf("parameters[%d].%s", i, s) }
		if !paramNameRE.MatchString(d.Name) {
			bad[f("name")] = "must be a shell-safe identifier: letters, digits, '_', not starting with a digit"
		} else if seen[d.Name] {
			bad[f("name")] = "duplicate parameter " + d.Name
		}
		seen[d.Name] = true
		if !slices.Contains([]string{ParamString, ParamInt, ParamBool, ParamEnum, ParamSecret}, d.Type) {
			bad[f("type")] = "must be one of string, int, bool, enum, secret"
			continue
		}
		if d.Regex != "" {
			if _, err := regexp.Compile(d.Regex); err != nil {
				bad[f("regex")] = "invalid regular expression"
			}
		}
		if d.Type == ParamEnum && len(d.Values) == 0 {
			bad[f("values")] = "an enum needs values"
		}
		if d.Type == ParamSecret && d.Default != nil {
			bad[f("default")] = "a secret has no default"
		}
		if d.Default != nil && d.Type != ParamSecret {
			raw, _ := json.Marshal(d.Default)
			if _, err := d.Check(raw); err != nil {
				bad[f("default")] = err.Error()
			}
		}
	}
	return bad
}

// Check validates a value for the parameter and returns it as the string
// the script receives.
func (d *ParamDef) Check(raw json.RawMessage) (string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil || v == nil {
		return "", errors.New("must be a value")
	}
	switch d.Type {
	case ParamString, ParamSecret, ParamEnum:
		s, ok := v.(string)
		if !ok {
			return "", errors.New("must be a string")
		}
		if d.Type == ParamEnum && !slices.Contains(d.Values, s) {
			return "", fmt.Errorf("must be one of %s", strings.Join(d.Values, ", "))
		}
		if d.Regex != "" {
			if re, err := regexp.Compile(d.Regex); err == nil && !re.MatchString(s) {
				return "", fmt.Errorf("must match %s", d.Regex)
			}
		}
		return s, nil
	case ParamInt:
		f, ok := v.(float64)
		if !ok || f != float64(int64(f)) {
			return "", errors.New("must be an integer")
		}
		if d.Min != nil && f < *d.Min || d.Max != nil && f > *d.Max {
			return "", errors.New("out of range")
		}
		return strconv.FormatInt(int64(f), 10), nil
	case ParamBool:
		b, ok := v.(bool)
		if !ok {
			return "", errors.New("must be true or false")
		}
		return strconv.FormatBool(b), nil
	}
	return "", errors.New("unknown parameter type")
}

// AssessRisk matches content against the rules; block beats approval.
// Each rule sees the script as written and as the shell would read it
// (ShellWords), so quoting, backslashes and long options do not hide a
// command: rm -rf "/", rm --recursive --force /, rm -r -f / all match.
func AssessRisk(content string, rules []RiskRule) (string, []string) {
	risk, matches := RiskNone, []string{}
	words := ShellWords(content)
	for _, r := range rules {
		re, err := regexp.Compile(r.Pattern)
		if err != nil {
			continue
		}
		hit := re.FindString(content)
		if hit == "" {
			if hit = re.FindString(words); hit == "" && !re.MatchString(content) && !re.MatchString(words) {
				continue
			}
		}
		matches = append(matches, r.Description+" ("+hit+")")
		if r.Action == "block" {
			risk = RiskBlocked
		} else if risk == RiskNone {
			risk = RiskApproval
		}
	}
	return risk, matches
}

// rmOptions spells rm's long options and upper-case aliases the way the
// risk rules expect them.
var rmOptions = map[string]string{"--recursive": "-r", "-R": "-r", "--force": "-f", "--dir": "-d"}

// ShellWords rewrites a script as the shell would split it, one command
// per line with its words separated by single spaces: quotes and
// backslash escapes removed ("/" and \/ read /), comments dropped, a
// command's path reduced to its name (/bin/rm reads rm), rm's long
// options spelled short, a bare -- dropped, and path arguments cleaned
// (// and /. read /). It is for matching risk rules, not for running.
func ShellWords(script string) string {
	var out strings.Builder
	var cmd []string
	var word strings.Builder
	inWord := false
	flushWord := func() {
		if inWord {
			cmd = append(cmd, word.String())
		}
		word.Reset()
		inWord = false
	}
	flushCmd := func(sep string) {
		flushWord()
		for i, w := range cmd {
			if i == 0 || cmd[i-1] == ";" || cmd[i-1] == "|" || cmd[i-1] == "&" || cmd[i-1] == "(" {
				if j := strings.LastIndexByte(w, '/'); j >= 0 && j < len(w)-1 && !strings.HasPrefix(w, "$") {
					w = w[j+1:]
				}
				cmd[i] = w
			}
		}
		isRm := false
		var words []string
		for i, w := range cmd {
			switch {
			case w == ";" || w == "|" || w == "&" || w == "(" || w == ")":
				isRm = false
			case isRm && w == "--":
				continue
			case isRm:
				if o, ok := rmOptions[w]; ok {
					w = o
				} else if strings.HasPrefix(w, "/") {
					w = path.Clean(w)
				} else if w == "~/" {
					w = "~"
				}
			case w == "rm" && (i == 0 || slices.Contains([]string{";", "|", "&", "(", "sudo", "command", "exec", "xargs", "nohup", "env"}, cmd[i-1])):
				isRm = true
			}
			words = append(words, w)
		}
		if len(words) > 0 {
			out.WriteString(strings.Join(words, " "))
			out.WriteString(sep)
		}
		cmd = cmd[:0]
	}
	rs := []rune(script)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == '\\':
			if i+1 < len(rs) {
				i++
				if rs[i] != '\n' { // backslash-newline joins lines
					word.WriteRune(rs[i])
					inWord = true
				}
			}
		case c == '\'' || (c == '$' && i+1 < len(rs) && rs[i+1] == '\''):
			if c == '$' {
				i++
			}
			ansi := c == '$'
			for i++; i < len(rs) && rs[i] != '\''; i++ {
				if ansi && rs[i] == '\\' && i+1 < len(rs) {
					i++
				}
				word.WriteRune(rs[i])
			}
			inWord = true
		case c == '"':
			for i++; i < len(rs) && rs[i] != '"'; i++ {
				if rs[i] == '\\' && i+1 < len(rs) && strings.ContainsRune("$`\"\\\n", rs[i+1]) {
					i++
					if rs[i] == '\n' {
						continue
					}
				}
				word.WriteRune(rs[i])
			}
			inWord = true
		case c == '#' && !inWord:
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
			flushCmd("\n")
		case c == '\n':
			flushCmd("\n")
		case c == ' ' || c == '\t' || c == '\r':
			flushWord()
		case strings.ContainsRune(";&|()", c):
			flushWord()
			cmd = append(cmd, string(c))
		default:
			word.WriteRune(c)
			inWord = true
		}
	}
	flushCmd("\n")
	return out.String()
}

// ScriptInput creates a script or a new version of one.
type ScriptInput struct {
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Tags        []string   `json:"tags"`
	Content     string     `json:"content"`
	Interpreter string     `json:"interpreter"`
	Parameters  []ParamDef `json:"parameters"`
	Comment     string     `json:"comment"`
}

func validateVersion(in *ScriptInput, bad map[string]string) {
	if strings.TrimSpace(in.Content) == "" {
		bad["content"] = "required"
	} else if len(in.Content) > 256<<10 {
		bad["content"] = "at most 256 KiB"
	}
	if in.Interpreter == "" {
		in.Interpreter = "bash"
	}
	if !slices.Contains(Interpreters, in.Interpreter) {
		bad["interpreter"] = "must be bash, sh or python3"
	}
	for k, v := range ValidateParamDefs(in.Parameters) {
		bad[k] = v
	}
	if in.Parameters == nil {
		in.Parameters = []ParamDef{}
	}
}

// CreateScript creates a script with its first version.
func (s *Store) CreateScript(ctx context.Context, in ScriptInput, author string) (*Script, *ScriptVersion, error) {
	bad := map[string]string{}
	if !credNameRE.MatchString(in.Name) {
		bad["name"] = "must be 1-100 letters, digits, '.', '_' or '-'"
	}
	validateVersion(&in, bad)
	if len(bad) > 0 {
		return nil, nil, invalid("invalid script", bad)
	}
	if in.Tags == nil {
		in.Tags = []string{}
	}
	now := time.Now().UTC()
	sc := &Script{Name: in.Name, Description: in.Description, Tags: in.Tags, CreatedBy: author, CreatedAt: now, UpdatedAt: now}
	var v *ScriptVersion
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(sc).Returning("id").Exec(ctx); err != nil {
			if isUniqueViolation(err) {
				return &ConflictError{Message: "script name taken", Fields: map[string]string{"name": "already exists"}}
			}
			return err
		}
		var err error
		v, err = s.addVersion(ctx, tx, sc, in, author)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: create script: %w", err)
	}
	return sc, v, nil
}

// AddScriptVersion adds the next immutable version of a script.
func (s *Store) AddScriptVersion(ctx context.Context, id int64, in ScriptInput, author string) (*ScriptVersion, error) {
	bad := map[string]string{}
	validateVersion(&in, bad)
	if len(bad) > 0 {
		return nil, invalid("invalid script version", bad)
	}
	var v *ScriptVersion
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		// Lock the script row so two new versions cannot take one number.
		sc := new(Script)
		if err := s.forUpdate(tx.NewSelect().Model(sc).Where("id = ?", id)).Scan(ctx); err != nil {
			return notFound(err)
		}
		if err := s.checkManaged(ctx, tx, KindScript, sc.Name); err != nil {
			return err
		}
		var err error
		v, err = s.addVersion(ctx, tx, sc, in, author)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: add script version: %w", err)
	}
	return v, nil
}

// forUpdate locks the rows q reads until the transaction ends, so two
// writers that read-then-write them (the next version number) queue
// (SQLite's write transactions are exclusive already).
func (s *Store) forUpdate(q *bun.SelectQuery) *bun.SelectQuery {
	if s.Engine == Postgres {
		return q.For("UPDATE")
	}
	return q
}

func (s *Store) addVersion(ctx context.Context, tx bun.Tx, sc *Script, in ScriptInput, author string) (*ScriptVersion, error) {
	var rules []RiskRule
	if err := tx.NewSelect().Model(&rules).Order("id").Scan(ctx); err != nil {
		return nil, err
	}
	risk, matches := AssessRisk(in.Content, rules)
	v := &ScriptVersion{ScriptID: sc.ID, Version: sc.LatestVersion + 1, Content: in.Content, Interpreter: in.Interpreter,
		Parameters: in.Parameters, Risk: risk, RiskMatches: matches, Comment: in.Comment, Author: author, CreatedAt: time.Now().UTC()}
	if _, err := tx.NewInsert().Model(v).Exec(ctx); err != nil {
		return nil, err
	}
	sc.LatestVersion, sc.UpdatedAt = v.Version, v.CreatedAt
	if _, err := tx.NewUpdate().Model(sc).Column("latest_version", "updated_at").WherePK().Exec(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// Script returns script id.
func (s *Store) Script(ctx context.Context, id int64) (*Script, error) {
	sc := new(Script)
	if err := s.DB.NewSelect().Model(sc).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: script %d: %w", id, notFound(err))
	}
	return sc, nil
}

// Scripts lists scripts by name, optionally those with a tag.
func (s *Store) Scripts(ctx context.Context, tag string) ([]Script, error) {
	var ss []Script
	if err := s.DB.NewSelect().Model(&ss).Order("name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: scripts: %w", err)
	}
	if tag == "" {
		return ss, nil
	}
	out := ss[:0]
	for _, sc := range ss {
		if slices.Contains(sc.Tags, tag) {
			out = append(out, sc)
		}
	}
	return out, nil
}

// ScriptVersion returns one version of a script.
func (s *Store) ScriptVersion(ctx context.Context, id, version int64) (*ScriptVersion, error) {
	v := new(ScriptVersion)
	if err := s.DB.NewSelect().Model(v).Where("script_id = ? AND version = ?", id, version).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: script %d version %d: %w", id, version, notFound(err))
	}
	return v, nil
}

// ScriptVersions lists a script's versions, newest first.
func (s *Store) ScriptVersions(ctx context.Context, id int64) ([]ScriptVersion, error) {
	var vs []ScriptVersion
	if err := s.DB.NewSelect().Model(&vs).Where("script_id = ?", id).OrderExpr("version DESC").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: script versions: %w", err)
	}
	return vs, nil
}

// RiskRules lists the high-risk command rules.
func (s *Store) RiskRules(ctx context.Context) ([]RiskRule, error) {
	var rs []RiskRule
	if err := s.DB.NewSelect().Model(&rs).Order("id").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: risk rules: %w", err)
	}
	return rs, nil
}

// CreateRiskRule adds a rule; it applies to versions created from now on.
func (s *Store) CreateRiskRule(ctx context.Context, r *RiskRule) error {
	bad := map[string]string{}
	if _, err := regexp.Compile(r.Pattern); err != nil || r.Pattern == "" {
		bad["pattern"] = "must be a valid regular expression"
	}
	if r.Action != "block" && r.Action != "approval" {
		bad["action"] = "must be block or approval"
	}
	if len(bad) > 0 {
		return invalid("invalid risk rule", bad)
	}
	r.CreatedAt = time.Now().UTC()
	if _, err := s.DB.NewInsert().Model(r).Returning("id").Exec(ctx); err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("store: create risk rule: %w", ErrConflict)
		}
		return fmt.Errorf("store: create risk rule: %w", err)
	}
	return nil
}

// DeleteRiskRule removes a rule.
func (s *Store) DeleteRiskRule(ctx context.Context, id int64) error {
	r := new(RiskRule)
	if err := s.DB.NewSelect().Model(r).Where("id = ?", id).Scan(ctx); err == nil {
		if err := s.checkManaged(ctx, s.DB, KindRiskRule, r.Pattern); err != nil {
			return err
		}
	}
	res, err := s.DB.NewDelete().Model((*RiskRule)(nil)).Where("id = ?", id).Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: delete risk rule: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: delete risk rule %d: %w", id, ErrNotFound)
	}
	return nil
}

func (s *Store) seedRiskRules(ctx context.Context) error {
	n, err := s.DB.NewSelect().Model((*RiskRule)(nil)).Where("builtin").Count(ctx)
	if err != nil || n > 0 {
		return err
	}
	for _, r := range BuiltinRiskRules {
		r := r
		r.Builtin, r.CreatedAt = true, time.Now().UTC()
		if _, err := s.DB.NewInsert().Model(&r).On("CONFLICT (pattern) DO NOTHING").Exec(ctx); err != nil {
			return fmt.Errorf("seed risk rule: %w", err)
		}
	}
	return nil
}

// credNameRE names scripts, approval policies and groups: letters and
// digits of any script, '.', '_' and '-' (combining marks after the
// first character); never spaces, separators or control characters.
var credNameRE = regexp.MustCompile(`^[\p{L}\p{N}._-][\p{L}\p{N}\p{M}._-]{0,99}$`)
