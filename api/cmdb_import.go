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
	"os"
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
// the whole import (422, the first bad rows listed with their row and
// column, and their count); ?dry_run=true reports what would change without
// writing. The body is spooled to a temporary file and read as a stream,
// twice when it is written (see schema.Store.Import), so memory stays
// bounded whatever its size.
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
	mt, _, _ := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	var read func(io.Reader) schema.ImportReader
	switch mt {
	case "text/csv":
		read = func(r io.Reader) schema.ImportReader { return newCSVImport(t, r) }
	case echo.MIMEApplicationJSON:
		read = func(r io.Reader) schema.ImportReader { return newJSONImport(r) }
	default:
		return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "Content-Type must be text/csv or application/json")
	}
	body, err := spoolImport(c)
	if err != nil {
		return err
	}
	defer body.Close()
	open := func() (schema.ImportReader, error) {
		if _, err := body.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		return read(body), nil
	}
	rep, err := a.store.Import(c.Request().Context(), typ, open, dry, change(c))
	if err != nil {
		return err
	}
	setAudit(c, "cmdb.import", fmt.Sprintf("ci_type:%s rows:%d", typ, rep.Rows))
	if rep.ErrorCount > 0 {
		return importFailed(rep)
	}
	return c.JSON(http.StatusOK, rep)
}

// spoolImport copies the request body (at most maxImport bytes) to an
// unlinked temporary file, so the upload is done before the import starts
// and its transaction never waits on a slow client.
func spoolImport(c echo.Context) (*os.File, error) {
	f, err := os.CreateTemp("", "opsflow-import-*")
	if err != nil {
		return nil, fmt.Errorf("import: spool body: %w", err)
	}
	_ = os.Remove(f.Name())
	_, err = io.Copy(f, http.MaxBytesReader(c.Response(), c.Request().Body, maxImport))
	if err == nil {
		return f, nil
	}
	f.Close()
	var mbe *http.MaxBytesError
	var pe *os.PathError
	switch {
	case errors.As(err, &mbe):
		return nil, newError(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("import body exceeds %d bytes", maxImport))
	case errors.As(err, &pe):
		return nil, fmt.Errorf("import: spool body: %w", err)
	}
	return nil, newError(http.StatusBadRequest, CodeBadRequest, "reading request body failed")
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
		Message: fmt.Sprintf("%d row error(s); nothing was written", rep.ErrorCount), Fields: fields, Details: rep}
}

// csvImport reads a header of name, labels and attribute names, then one
// CI per row. Empty cells are unset attributes; labels read k=v,k2=v2; a
// cell escaped by the export against formulas is unescaped.
type csvImport struct {
	r                  *csv.Reader
	t                  *schema.CIType
	header             []string
	nameCol, labelsCol int
	attrCols           map[int]*schema.AttributeDef
	line               int
	done               bool
}

func newCSVImport(t *schema.CIType, r io.Reader) *csvImport {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	return &csvImport{r: cr, t: t}
}

func (ci *csvImport) Next() (*schema.ImportRow, []schema.RowError, error) {
	if ci.done {
		return nil, nil, io.EOF
	}
	if ci.header == nil {
		ci.line = 1
		header, err := ci.r.Read()
		if err != nil {
			ci.done = true
			return nil, []schema.RowError{{Row: 1, Column: "", Reason: "no CSV header: " + err.Error()}}, nil
		}
		if errs := ci.readHeader(header); len(errs) > 0 {
			ci.done = true
			return nil, errs, nil
		}
	}
	for {
		ci.line++
		rec, err := ci.r.Read()
		if err == io.EOF {
			ci.done = true
			return nil, nil, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			ci.done = true
			return nil, []schema.RowError{{Row: ci.line, Reason: "malformed CSV: " + err.Error()}}, nil
		} else if err != nil {
			return nil, nil, fmt.Errorf("import: read csv: %w", err)
		}
		if len(rec) == 1 && rec[0] == "" {
			continue
		}
		row, errs := ci.row(rec)
		return row, errs, nil
	}
}

func (ci *csvImport) readHeader(header []string) []schema.RowError {
	var errs []schema.RowError
	ci.header = make([]string, len(header))
	ci.nameCol, ci.labelsCol, ci.attrCols = -1, -1, map[int]*schema.AttributeDef{}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		ci.header[i] = h
		switch h {
		case "name":
			ci.nameCol = i
		case "labels":
			ci.labelsCol = i
		default:
			d, ok := ci.t.Attr(h)
			if !ok {
				errs = append(errs, schema.RowError{Row: 1, Column: h, Reason: "type " + ci.t.Name + " has no attribute " + h})
				continue
			}
			ci.attrCols[i] = d
		}
	}
	if ci.nameCol < 0 {
		errs = append(errs, schema.RowError{Row: 1, Column: "name", Reason: "the header needs a name column"})
	}
	return errs
}

// row reads one record; a row with errors carries nothing else.
func (ci *csvImport) row(rec []string) (*schema.ImportRow, []schema.RowError) {
	line := ci.line
	if len(rec) != len(ci.header) {
		return &schema.ImportRow{Row: line}, []schema.RowError{{Row: line, Reason: fmt.Sprintf("has %d columns, the header %d", len(rec), len(ci.header))}}
	}
	var errs []schema.RowError
	for i, cell := range rec {
		// Invalid UTF-8 would be stored as U+FFFD, a NUL refused by
		// PostgreSQL mid-import: both are the cell's fault.
		if reason := badText(cell, utf8.ValidString(cell)); reason != "" || !utf8.ValidString(cell) {
			if reason == "" {
				reason = "must be valid UTF-8 text"
			}
			errs = append(errs, schema.RowError{Row: line, Column: ci.header[i], Reason: reason})
		}
		rec[i] = unescapeCSVCell(cell)
	}
	if len(errs) > 0 {
		return &schema.ImportRow{Row: line}, errs
	}
	row := &schema.ImportRow{Row: line, Name: rec[ci.nameCol], Attributes: map[string]json.RawMessage{}}
	if ci.labelsCol >= 0 {
		labels, err := parseLabels(rec[ci.labelsCol])
		if err != nil {
			errs = append(errs, schema.RowError{Row: line, Column: "labels", Reason: err.Error()})
		}
		row.Labels = labels
	}
	for i, d := range ci.attrCols {
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
	if len(errs) > 0 {
		return &schema.ImportRow{Row: line}, errs
	}
	return row, nil
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

// jsonImport reads a JSON array of importJSONRow one element at a time.
// A malformed array ends the import with a 400; a bad element is that
// row's error.
type jsonImport struct {
	dec     *json.Decoder
	row     int
	started bool
	done    bool
}

func newJSONImport(r io.Reader) *jsonImport { return &jsonImport{dec: json.NewDecoder(r)} }

func (j *jsonImport) Next() (*schema.ImportRow, []schema.RowError, error) {
	if j.done {
		return nil, nil, io.EOF
	}
	if !j.started {
		j.started = true
		tok, err := j.dec.Token()
		if err == io.EOF {
			return nil, nil, newError(http.StatusBadRequest, CodeInvalidJSON, "request body is required")
		} else if err != nil {
			return nil, nil, jsonError(err)
		}
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return nil, nil, newError(http.StatusBadRequest, CodeInvalidJSON, "request body must be a JSON array")
		}
	}
	if !j.dec.More() {
		if _, err := j.dec.Token(); err != nil { // the closing ]
			return nil, nil, jsonError(err)
		}
		if _, err := j.dec.Token(); err != io.EOF {
			return nil, nil, newError(http.StatusBadRequest, CodeInvalidJSON, "unexpected data after the JSON array")
		}
		j.done = true
		return nil, nil, io.EOF
	}
	var raw json.RawMessage
	if err := j.dec.Decode(&raw); err != nil {
		return nil, nil, jsonError(err)
	}
	j.row++
	var r importJSONRow
	if err := decodeBody(raw, &r); err != nil {
		var ae *Error
		errors.As(err, &ae)
		col := ""
		for k := range ae.Fields {
			col = k
		}
		return &schema.ImportRow{Row: j.row}, []schema.RowError{{Row: j.row, Column: col, Reason: ae.Message}}, nil
	}
	return &schema.ImportRow{Row: j.row, Name: r.Name, Labels: r.Labels, Attributes: r.Attributes}, nil, nil
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
