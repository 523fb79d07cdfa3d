package api

import (
	"encoding/csv"
	"io"
	"strconv"
)

// safeCSVWriter writes CSV for spreadsheets: a cell that a spreadsheet
// would run as a formula (starting with = + - @, tab or carriage return)
// is prefixed with a single quote, as OWASP advises against CSV
// injection. Plain numbers ("-5", "+1.5") stay as they are.
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
	if v == "" {
		return v
	}
	switch v[0] {
	case '=', '+', '-', '@', '\t', '\r':
		if _, err := strconv.ParseFloat(v, 64); err == nil && v[0] != '=' && v[0] != '@' && v[0] != '\t' && v[0] != '\r' {
			return v
		}
		return "'" + v
	}
	return v
}
