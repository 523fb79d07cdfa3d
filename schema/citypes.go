package schema

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// Attribute types a CI type may declare.
const (
	AttrString   = "string"
	AttrInt      = "int"
	AttrFloat    = "float"
	AttrBool     = "bool"
	AttrEnum     = "enum"
	AttrIP       = "ip"
	AttrCIDR     = "cidr"
	AttrDatetime = "datetime"
	AttrJSON     = "json"
)

var attrTypes = []string{AttrString, AttrInt, AttrFloat, AttrBool, AttrEnum, AttrIP, AttrCIDR, AttrDatetime, AttrJSON}

// AttributeDef declares one attribute of a CI type.
type AttributeDef struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	Description string   `json:"description,omitempty"`
	Required    bool     `json:"required,omitempty"`
	Unique      bool     `json:"unique,omitempty"`
	Default     any      `json:"default,omitempty"`
	Regex       string   `json:"regex,omitempty"`  // string
	Min         *float64 `json:"min,omitempty"`    // int, float
	Max         *float64 `json:"max,omitempty"`    // int, float
	Values      []string `json:"values,omitempty"` // enum
}

// CIType is a kind of configuration item, defined as data.
type CIType struct {
	bun.BaseModel `bun:"table:ci_types"`

	Name        string         `bun:"name,pk" json:"name"`
	Description string         `bun:"description" json:"description"`
	Attributes  []AttributeDef `bun:"attributes,type:text" json:"attributes"`
	Builtin     bool           `bun:"builtin" json:"builtin"`
	Version     int64          `bun:"version" json:"version"`
	CreatedAt   time.Time      `bun:"created_at" json:"created_at"`
	UpdatedAt   time.Time      `bun:"updated_at" json:"updated_at"`
}

// Attr returns the definition of attribute name.
func (t *CIType) Attr(name string) (*AttributeDef, bool) {
	for i := range t.Attributes {
		if t.Attributes[i].Name == name {
			return &t.Attributes[i], true
		}
	}
	return nil, false
}

var (
	typeNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	attrNameRE = typeNameRE
)

// ValidTypeName reports whether s may name a CI or relation type.
func ValidTypeName(s string) bool { return typeNameRE.MatchString(s) }

// validateDefs checks attribute definitions, keyed "attributes[i].field".
func validateDefs(defs []AttributeDef) map[string]string {
	bad := map[string]string{}
	seen := map[string]bool{}
	for i := range defs {
		d := &defs[i]
		f := func(s string) string { return fmt.Sprintf("attributes[%d].%s", i, s) }
		if !attrNameRE.MatchString(d.Name) {
			bad[f("name")] = "must be 1-63 lowercase letters, digits or '_', starting with a letter"
		} else if d.Name == "name" {
			bad[f("name")] = "'name' is every CI's own field"
		} else if seen[d.Name] {
			bad[f("name")] = "duplicate attribute " + d.Name
		}
		seen[d.Name] = true
		if !slices.Contains(attrTypes, d.Type) {
			bad[f("type")] = "must be one of " + strings.Join(attrTypes, ", ")
			continue
		}
		if d.Regex != "" {
			if d.Type != AttrString {
				bad[f("regex")] = "only string attributes take a regex"
			} else if _, err := regexp.Compile(d.Regex); err != nil {
				bad[f("regex")] = "invalid regular expression: " + err.Error()
			}
		}
		if (d.Min != nil || d.Max != nil) && d.Type != AttrInt && d.Type != AttrFloat {
			bad[f("min")] = "only int and float attributes take min/max"
		}
		if d.Min != nil && d.Max != nil && *d.Min > *d.Max {
			bad[f("min")] = "min is greater than max"
		}
		if d.Type == AttrEnum && len(d.Values) == 0 {
			bad[f("values")] = "an enum needs at least one value"
		} else if d.Type != AttrEnum && len(d.Values) > 0 {
			bad[f("values")] = "only enum attributes take values"
		}
		if d.Unique && (d.Type == AttrJSON || d.Type == AttrBool) {
			bad[f("unique")] = d.Type + " attributes cannot be unique"
		}
		if d.Unique && d.Default != nil {
			bad[f("default")] = "a unique attribute cannot have a default"
		}
		if d.Default != nil {
			raw, _ := json.Marshal(d.Default)
			if _, _, err := d.Normalize(raw); err != nil {
				bad[f("default")] = err.Error()
			}
		}
	}
	return bad
}

// Normalize checks a raw JSON value against the definition and returns its
// canonical value and the string under which it is indexed.
func (d *AttributeDef) Normalize(raw json.RawMessage) (any, string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, "", fmt.Errorf("not valid JSON")
	}
	if v == nil {
		return nil, "", errors.New("must not be null")
	}
	str := func() (string, error) {
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("must be a string")
		}
		return s, nil
	}
	switch d.Type {
	case AttrString:
		s, err := str()
		if err != nil {
			return nil, "", err
		}
		if d.Regex != "" {
			if re, err := regexp.Compile(d.Regex); err == nil && !re.MatchString(s) {
				return nil, "", fmt.Errorf("must match %s", d.Regex)
			}
		}
		return s, s, nil
	case AttrInt:
		n, ok := v.(json.Number)
		if !ok {
			return nil, "", errors.New("must be an integer")
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			return nil, "", errors.New("must be an integer")
		}
		if err := d.checkRange(float64(i)); err != nil {
			return nil, "", err
		}
		return i, strconv.FormatInt(i, 10), nil
	case AttrFloat:
		n, ok := v.(json.Number)
		if !ok {
			return nil, "", errors.New("must be a number")
		}
		f, err := n.Float64()
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, "", errors.New("must be a finite number")
		}
		if err := d.checkRange(f); err != nil {
			return nil, "", err
		}
		return f, strconv.FormatFloat(f, 'g', -1, 64), nil
	case AttrBool:
		b, ok := v.(bool)
		if !ok {
			return nil, "", errors.New("must be true or false")
		}
		return b, strconv.FormatBool(b), nil
	case AttrEnum:
		s, err := str()
		if err != nil {
			return nil, "", err
		}
		if !slices.Contains(d.Values, s) {
			return nil, "", fmt.Errorf("must be one of %s", strings.Join(d.Values, ", "))
		}
		return s, s, nil
	case AttrIP:
		s, err := str()
		if err != nil {
			return nil, "", err
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, "", errors.New("must be an IP address such as 10.0.0.1 or 2001:db8::1")
		}
		return a.String(), a.String(), nil
	case AttrCIDR:
		s, err := str()
		if err != nil {
			return nil, "", err
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, "", errors.New("must be a CIDR such as 10.0.0.0/24")
		}
		return p.String(), p.String(), nil
	case AttrDatetime:
		s, err := str()
		if err != nil {
			return nil, "", err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, "", errors.New("must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
		}
		c := t.UTC().Format(time.RFC3339Nano)
		return c, c, nil
	case AttrJSON:
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, "", errors.New("not valid JSON")
		}
		return json.RawMessage(buf.Bytes()), buf.String(), nil
	}
	return nil, "", fmt.Errorf("unknown attribute type %q", d.Type)
}

func (d *AttributeDef) checkRange(f float64) error {
	if d.Min != nil && f < *d.Min {
		return fmt.Errorf("must be at least %s", strconv.FormatFloat(*d.Min, 'g', -1, 64))
	}
	if d.Max != nil && f > *d.Max {
		return fmt.Errorf("must be at most %s", strconv.FormatFloat(*d.Max, 'g', -1, 64))
	}
	return nil
}

// ParseFilterValue canonicalizes a query-string value for comparison with
// indexed values of the attribute.
func (d *AttributeDef) ParseFilterValue(s string) (string, error) {
	var raw json.RawMessage
	switch d.Type {
	case AttrInt, AttrFloat, AttrBool:
		raw = json.RawMessage(s)
	default:
		raw, _ = json.Marshal(s)
	}
	_, idx, err := d.Normalize(raw)
	return idx, err
}

// Types lists every CI type by name.
func (s *Store) Types(ctx context.Context) ([]CIType, error) {
	var ts []CIType
	if err := s.DB.NewSelect().Model(&ts).Order("name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: ci types: %w", err)
	}
	return ts, nil
}

// Type returns the CI type name.
func (s *Store) Type(ctx context.Context, name string) (*CIType, error) {
	return typeIn(ctx, s.DB, name)
}

func typeIn(ctx context.Context, db bun.IDB, name string) (*CIType, error) {
	t := new(CIType)
	if err := db.NewSelect().Model(t).Where("name = ?", name).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: ci type %q: %w", name, notFound(err))
	}
	return t, nil
}

// CreateType adds a CI type.
func (s *Store) CreateType(ctx context.Context, t *CIType) error {
	bad := validateDefs(t.Attributes)
	if !ValidTypeName(t.Name) {
		bad["name"] = "must be 1-63 lowercase letters, digits or '_', starting with a letter"
	}
	if len(bad) > 0 {
		return invalid("invalid CI type", bad)
	}
	if t.Attributes == nil {
		t.Attributes = []AttributeDef{}
	}
	now := time.Now().UTC()
	t.CreatedAt, t.UpdatedAt, t.Version = now, now, 1
	if _, err := s.DB.NewInsert().Model(t).Exec(ctx); err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("store: create ci type %q: %w", t.Name, ErrConflict)
		}
		return fmt.Errorf("store: create ci type %q: %w", t.Name, err)
	}
	return nil
}

// TypeChangeRefused lists the CIs a type change would invalidate.
type TypeChangeRefused struct {
	Offending []OffendingCI
}

// OffendingCI is a CI that would not satisfy a changed type, and why.
type OffendingCI struct {
	ID     int64             `json:"id"`
	Name   string            `json:"name"`
	Fields map[string]string `json:"fields"`
}

func (e *TypeChangeRefused) Error() string {
	return fmt.Sprintf("the change would invalidate %d CI(s)", len(e.Offending))
}

// UpdateType replaces the description and attribute definitions of a type.
// Existing CIs are checked against the new definitions; if any would
// become invalid nothing changes and TypeChangeRefused lists them (up to
// 100). Attributes that gained a default get it filled in on CIs missing
// them.
func (s *Store) UpdateType(ctx context.Context, name, description string, defs []AttributeDef) (*CIType, error) {
	if bad := validateDefs(defs); len(bad) > 0 {
		return nil, invalid("invalid CI type", bad)
	}
	if err := s.checkManaged(ctx, s.DB, KindCMDBType, name); err != nil {
		return nil, err
	}
	var out *CIType
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		t, err := typeIn(ctx, tx, name)
		if err != nil {
			return err
		}
		nt := *t
		nt.Description, nt.Attributes = description, defs
		if nt.Attributes == nil {
			nt.Attributes = []AttributeDef{}
		}
		var cis []CI
		if err := tx.NewSelect().Model(&cis).Where("type = ?", name).Order("id").Scan(ctx); err != nil {
			return err
		}
		var offending []OffendingCI
		type fix struct {
			ci    *CI
			attrs map[string]any
		}
		var fixes []fix
		for i := range cis {
			c := &cis[i]
			attrs, bad := normalizeAll(&nt, rawAttrs(c.Attributes), true)
			for k := range c.Attributes {
				if _, ok := nt.Attr(k); !ok {
					bad["attributes."+k] = "attribute removed from the type while this CI has a value"
				}
			}
			if len(bad) > 0 {
				if len(offending) < 100 {
					offending = append(offending, OffendingCI{ID: c.ID, Name: c.Name, Fields: bad})
				}
				continue
			}
			fixes = append(fixes, fix{c, attrs})
		}
		if len(offending) > 0 {
			return &TypeChangeRefused{Offending: offending}
		}
		// Re-index every CI under the new definitions (types, uniqueness
		// and defaults may have changed).
		for _, f := range fixes {
			f.ci.Attributes = f.attrs
			if _, err := tx.NewUpdate().Model(f.ci).Column("attributes").WherePK().Exec(ctx); err != nil {
				return err
			}
			if err := reindex(ctx, tx, &nt, f.ci); err != nil {
				return err
			}
		}
		nt.Version++
		nt.UpdatedAt = time.Now().UTC()
		if _, err := tx.NewUpdate().Model(&nt).Column("description", "attributes", "version", "updated_at").WherePK().Exec(ctx); err != nil {
			return err
		}
		out = &nt
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: update ci type %q: %w", name, err)
	}
	return out, nil
}

func rawAttrs(m map[string]any) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		b, _ := json.Marshal(v)
		out[k] = b
	}
	return out
}

// normalizeAll validates raw attribute values against t: unknown names,
// wrong values, missing required ones. Missing values take defaults.
func normalizeAll(t *CIType, raw map[string]json.RawMessage, ignoreUnknown bool) (map[string]any, map[string]string) {
	bad := map[string]string{}
	out := make(map[string]any, len(raw))
	for k, v := range raw {
		d, ok := t.Attr(k)
		if !ok {
			if !ignoreUnknown {
				bad["attributes."+k] = "type " + t.Name + " has no attribute " + k
			}
			continue
		}
		val, _, err := d.Normalize(v)
		if err != nil {
			bad["attributes."+k] = err.Error()
			continue
		}
		out[k] = val
	}
	for i := range t.Attributes {
		d := &t.Attributes[i]
		if _, ok := out[d.Name]; ok || bad["attributes."+d.Name] != "" {
			continue
		}
		if d.Default != nil {
			raw, _ := json.Marshal(d.Default)
			if val, _, err := d.Normalize(raw); err == nil {
				out[d.Name] = val
				continue
			}
		}
		if d.Required {
			bad["attributes."+d.Name] = "required"
		}
	}
	return out, bad
}
