package api

import (
	"encoding/csv"
	"io"
	"strconv"
	"strings"
)

// safeCSVWriter writes CSV for spreadsheets: a cell that a spreadsheet
// would run as a formula (starting with = + - @, tab or carriage return)
// is prefixed with a single quote, as OWASP advises against CSV
// injection. Plain numbers ("-5", "+1.5") stay as they are. A cell whose
// leading quotes are followed by one of those is quoted once more, so
// that unescapeCSVCell undoes every escape exactly.
type safeCSVWriter struct{ *csv.Writer }

func newSafeCSVWriter(w io.Writer) safeCSVWriter { return safeCSVWriter{csv.NewWriter(w)} }

func (w safeCSVWriter) Write(rec []string) error {
	out := make([]string, len(rec))
	for i, v := range rec {
		out[i] = escapeCSVCell(v)
	}
	return w.Writer.Write(out)
}

func escapeCSVCell(v string) string {
	if !formulaStart(strings.TrimLeft(v, "'")) {
		return v
	}
	if v[0] == '+' || v[0] == '-' {
		if _, err := strconv.ParseFloat(v, 64); err == nil {
			return v
		}
	}
	return "'" + v
}

// unescapeCSVCell removes the quote escapeCSVCell adds, so an export
// re-imports unchanged: one leading quote when the cell, past its leading
// quotes, starts as a formula would.
func unescapeCSVCell(v string) string {
	if strings.HasPrefix(v, "'") && formulaStart(strings.TrimLeft(v, "'")) {
		return v[1:]
	}
	return v
}

func formulaStart(v string) bool {
	return v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0]))
}
