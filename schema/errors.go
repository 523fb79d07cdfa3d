package schema

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// The store's errors, in one place: sentinels checked with errors.Is, and
// the ValidationError the API answers with 422.

var (
	// ErrNotFound is returned when a row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a unique key is already taken.
	ErrConflict = errors.New("conflict")
)

// ErrBadCursor is returned for a cursor this store did not issue.
var ErrBadCursor = errors.New("malformed cursor")

// ErrNoApprover means a level of a policy has nobody to decide it but the
// requester.
var ErrNoApprover = errors.New("no approver other than the requester")

// ValidationError says which fields of an input are wrong and why. The API
// answers it with 422.
type ValidationError struct {
	Message string
	Fields  map[string]string
}

func (e *ValidationError) Error() string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(e.Message)
	for _, k := range keys {
		fmt.Fprintf(&b, "; %s: %s", k, e.Fields[k])
	}
	return b.String()
}

func invalid(msg string, fields map[string]string) error {
	return &ValidationError{Message: msg, Fields: fields}
}
