package api

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/opsflow/opsflow/schema"
)

// maxImport caps an import body: 100,000 CIs fit comfortably.
const maxImport = 256 << 20

// importCIs upserts CIs of one type from CSV or JSON. Any bad row stops
// the whole import (422, every bad row listed with its row and column);
// ?dry_run=true reports what would change without writing.
func (a *API) importCIs(c echo.Context) error {
	typ := c.QueryParam("type")
	setAudit(c, "cmdb.import", "ci_type:"+typ)
	dry, err := boolParam(c, "dry_run")
	if err != nil {
		return err
	}
	if typ == "" {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "type is required", Fields: map[string]string{"type": "required"}}
	}
	t, err := a.store.Type(c.Request().Context(), typ)
	if errors.Is(err, schema.ErrNotFound) {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "unknown CI type", Fields: map[string]string{"type": "unknown CI type " + strconv.Quote(typ)}}
	} else if err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxImport))
	if err != nil {
		return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("import body exceeds %d bytes", maxImport))
	}
	mt, _, _ := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	var rows []schema.ImportRow
	var rowErrs []schema.RowError
	switch mt {
	case "text/csv":
		rows, rowErrs = parseImportCSV(t, body)
	case echo.MIMEApplicationJSON:
		rows, rowErrs, err = parseImportJSON(body)
		if err != nil {
			return err
		}
	default:
		return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "Content-Type must be text/csv or application/json")
	}
	setAudit(c, "cmdb.import", fmt.Sprintf("ci_type:%s rows:%d", typ, len(rows)))
	if len(rowErrs) > 0 {
		// Check the rows that parsed too, so one answer lists every
		// problem; write nothing.
		failed := map[int]bool{}
		for _, e := range rowErrs {
			failed[e.Row] = true
		}
		var ok []schema.ImportRow
		for _, r := range rows {
			if !failed[r.Row] {
				ok = append(ok, r)
			}
		}
		rep, err := a.store.Import(c.Request().Context(), typ, ok, true, change(c))
		if err != nil {
			return err
		}
		rep.DryRun, rep.Rows = dry, len(rows)
		rep.Errors = append(rep.Errors, rowErrs...)
		sort.Slice(rep.Errors, func(i, j int) bool { return rep.Errors[i].Row < rep.Errors[j].Row })
		return importFailed(rep)
	}
	rep, err := a.store.Import(c.Request().Context(), typ, rows, dry, change(c))
	if err != nil {
		return err
	}
	if len(rep.Errors) > 0 {
		return importFailed(rep)
	}
	return c.JSON(http.StatusOK, rep)
}

func importFailed(rep *schema.ImportReport) error {
	fields := map[string]string{}
	for _, e := range rep.Errors {
		k := fmt.Sprintf("row %d: %s", e.Row, e.Column)
		if _, ok := fields[k]; !ok && len(fields) < 50 {
			fields[k] = e.Reason
		}
	}
	return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation,
		Message: fmt.Sprintf("%d row error(s); nothing was written", len(rep.Errors)), Fields: fields, Details: rep}
}

// parseImportCSV reads a header of name, labels and attribute names, then
// one CI per row. Empty cells are unset attributes; labels read k=v,k2=v2.
func parseImportCSV(t *schema.CIType, body []byte) ([]schema.ImportRow, []schema.RowError) {
	r := csv.NewReader(bytes.NewReader(body))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, []schema.RowError{{Row: 1, Column: "", Reason: "no CSV header: " + err.Error()}}
	}
	var errs []schema.RowError
	nameCol, labelsCol := -1, -1
	attrCols := map[int]*schema.AttributeDef{}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		switch h {
		case "name":
			nameCol = i
		case "labels":
			labelsCol = i
		default:
			d, ok := t.Attr(h)
			if !ok {
				errs = append(errs, schema.RowError{Row: 1, Column: h, Reason: "type " + t.Name + " has no attribute " + h})
				continue
			}
			attrCols[i] = d
		}
	}
	if nameCol < 0 {
		errs = append(errs, schema.RowError{Row: 1, Column: "name", Reason: "the header needs a name column"})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	var rows []schema.ImportRow
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			errs = append(errs, schema.RowError{Row: line, Reason: "malformed CSV: " + err.Error()})
			break
		}
		if len(rec) == 1 && rec[0] == "" {
			continue
		}
		if len(rec) != len(header) {
			errs = append(errs, schema.RowError{Row: line, Reason: fmt.Sprintf("has %d columns, the header %d", len(rec), len(header))})
			continue
		}
		textOK := true
		for i, cell := range rec {
			// Invalid UTF-8 would be stored as U+FFFD, a NUL refused by
			// PostgreSQL mid-import: both are the cell's fault.
			if reason := badText(cell, utf8.ValidString(cell)); reason != "" || !utf8.ValidString(cell) {
				if reason == "" {
					reason = "must be valid UTF-8 text"
				}
				errs = append(errs, schema.RowError{Row: line, Column: header[i], Reason: reason})
				textOK = false
			}
		}
		if !textOK {
			continue
		}
		row := schema.ImportRow{Row: line, Name: rec[nameCol], Attributes: map[string]json.RawMessage{}}
		if labelsCol >= 0 {
			labels, err := parseLabels(rec[labelsCol])
			if err != nil {
				errs = append(errs, schema.RowError{Row: line, Column: "labels", Reason: err.Error()})
			}
			row.Labels = labels
		}
		for i, d := range attrCols {
			cell := rec[i]
			if cell == "" {
				continue
			}
			switch d.Type {
			case schema.AttrInt, schema.AttrFloat, schema.AttrBool, schema.AttrJSON:
				if !json.Valid([]byte(cell)) {
					errs = append(errs, schema.RowError{Row: line, Column: d.Name, Reason: "not a valid " + d.Type})
					continue
				}
				row.Attributes[d.Name] = json.RawMessage(cell)
			default:
				row.Attributes[d.Name], _ = json.Marshal(cell)
			}
		}
		rows = append(rows, row)
	}
	return rows, errs
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		k = strings.TrimSpace(k)
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("label %s given twice", k)
		}
		out[k] = strings.TrimSpace(v)
	}
	return out, nil
}

type importJSONRow struct {
	Name       string                     `json:"name"`
	Labels     map[string]string          `json:"labels"`
	Attributes map[string]json.RawMessage `json:"attributes"`
}

func parseImportJSON(body []byte) ([]schema.ImportRow, []schema.RowError, error) {
	var in []json.RawMessage
	if err := decodeBody(body, &in); err != nil {
		return nil, nil, err
	}
	rows := make([]schema.ImportRow, 0, len(in))
	var errs []schema.RowError
	for i, raw := range in {
		var r importJSONRow
		if err := decodeBody(raw, &r); err != nil {
			var ae *Error
			errors.As(err, &ae)
			col := ""
			for k := range ae.Fields {
				col = k
			}
			errs = append(errs, schema.RowError{Row: i + 1, Column: col, Reason: ae.Message})
			continue
		}
		rows = append(rows, schema.ImportRow{Row: i + 1, Name: r.Name, Labels: r.Labels, Attributes: r.Attributes})
	}
	return rows, errs, nil
}

// exportCIs writes the CIs of a type matching a selector as CSV or JSON in
// the form importCIs reads, so an export re-imports unchanged.
func (a *API) exportCIs(c echo.Context) error {
	typ := c.QueryParam("type")
	format := c.QueryParam("format")
	if format == "" {
		format = "json"
		if strings.Contains(c.Request().Header.Get(echo.HeaderAccept), "text/csv") {
			format = "csv"
		}
	}
	bad := fieldErrors{}
	if typ == "" {
		bad.add("type", "required")
	}
	if format != "csv" && format != "json" {
		bad.add("format", "must be csv or json")
	}
	if err := bad.err(); err != nil {
		return err
	}
	t, err := a.store.Type(c.Request().Context(), typ)
	if errors.Is(err, schema.ErrNotFound) {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "unknown CI type", Fields: map[string]string{"type": "unknown CI type " + strconv.Quote(typ)}}
	} else if err != nil {
		return err
	}
	cis, err := a.store.ExportCIs(c.Request().Context(), schema.CIQuery{Type: typ, Selector: c.QueryParam("selector")})
	if err != nil {
		return err
	}
	if format == "json" {
		out := make([]importJSONRow, len(cis))
		for i, ci := range cis {
			out[i] = importJSONRow{Name: ci.Name, Labels: ci.Labels, Attributes: map[string]json.RawMessage{}}
			for k, v := range ci.Attributes {
				out[i].Attributes[k], _ = json.Marshal(v)
			}
		}
		c.Response().Header().Set(echo.HeaderContentDisposition, `attachment; filename="`+typ+`.json"`)
		return c.JSON(http.StatusOK, out)
	}
	var buf bytes.Buffer
	w := newSafeCSVWriter(&buf)
	header := []string{"name", "labels"}
	for _, d := range t.Attributes {
		header = append(header, d.Name)
	}
	_ = w.Write(header)
	for _, ci := range cis {
		keys := make([]string, 0, len(ci.Labels))
		for k := range ci.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var labels []string
		for _, k := range keys {
			labels = append(labels, k+"="+ci.Labels[k])
		}
		rec := []string{ci.Name, strings.Join(labels, ",")}
		for _, d := range t.Attributes {
			v, ok := ci.Attributes[d.Name]
			switch {
			case !ok:
				rec = append(rec, "")
			case d.Type == schema.AttrInt || d.Type == schema.AttrFloat || d.Type == schema.AttrBool || d.Type == schema.AttrJSON:
				b, _ := json.Marshal(v)
				rec = append(rec, string(b))
			default:
				rec = append(rec, fmt.Sprint(v))
			}
		}
		_ = w.Write(rec)
	}
	w.Flush()
	c.Response().Header().Set(echo.HeaderContentDisposition, `attachment; filename="`+typ+`.csv"`)
	return c.Blob(http.StatusOK, "text/csv; charset=utf-8", buf.Bytes())
}
