package schema

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// Every list (jobs, runs, CIs, tickets, audit) pages the same way: keyset
// pagination on (sort column, id), so a page costs an index range scan
// however deep it is, and rows written between two page loads neither
// repeat nor vanish. A cursor names a row and a direction: Next reads
// after the page's last row, Prev before its first.

// Page asks for one page of a list.
type Page struct {
	Sort   string // a key the list allows (ListSorts); "" for its default
	Order  string // "asc", "desc", or "" for the list's default
	Cursor string // Next or Prev of an earlier page with the same sort
	Limit  int    // rows per page, clamped to 1..500 (50 when unset)
}

// PageInfo is where a page sits in its list.
type PageInfo struct {
	Next  string // cursor of the following page; "" on the last
	Prev  string // cursor of the preceding page; "" on the first
	Total int    // rows matching the filter, on every page
	Sort  string // the sort and order used, defaults filled in
	Order string
}

// Sort orders.
const (
	OrderAsc  = "asc"
	OrderDesc = "desc"
)

type colKind int

const (
	colInt colKind = iota
	colText
	colTime
)

type sortCol struct {
	expr string
	kind colKind
}

// listSpec is what a list may be sorted by. The id breaks ties, so the
// order is total and a cursor names exactly one position.
type listSpec struct {
	id      sortCol
	sorts   map[string]sortCol
	defSort string
	defDesc bool
}

var lists = map[string]listSpec{
	"jobs": {id: sortCol{"id", colInt}, defSort: "created", defDesc: true, sorts: map[string]sortCol{
		"id": {"id", colInt}, "created": {"created_at", colTime}, "status": {"status", colText},
		"created_by": {"created_by", colText}, "script": {"script_id", colInt}, "hosts": {"total", colInt}}},
	"runs": {id: sortCol{"workflow_id", colText}, defSort: "started", defDesc: true, sorts: map[string]sortCol{
		"started": {"started_at", colTime}, "kind": {"kind", colText}, "status": {"status", colText},
		"started_by": {"started_by", colText}, "id": {"workflow_id", colText}}},
	"cis": {id: sortCol{"ci.id", colInt}, defSort: "id", defDesc: false, sorts: map[string]sortCol{
		"id": {"ci.id", colInt}, "name": {"ci.name", colText}, "type": {"ci.type", colText},
		"updated": {"ci.updated_at", colTime}, "version": {"ci.version", colInt}}},
	"tickets": {id: sortCol{"id", colInt}, defSort: "id", defDesc: true, sorts: map[string]sortCol{
		"id": {"id", colInt}, "created": {"created_at", colTime}, "status": {"status", colText},
		"requester": {"requester", colText}, "title": {"title", colText}}},
	"runbooks": {id: sortCol{"id", colInt}, defSort: "name", defDesc: false, sorts: map[string]sortCol{
		"id": {"id", colInt}, "name": {"name", colText}, "created": {"created_at", colTime}, "updated": {"updated_at", colTime}}},
	"audit": {id: sortCol{"id", colInt}, defSort: "id", defDesc: true, sorts: map[string]sortCol{
		"id": {"id", colInt}, "at": {"at", colTime}, "actor": {"actor", colText},
		"action": {"action", colText}, "target": {"target", colText}, "status": {"status", colInt}}},
}

// ListSorts returns the sort keys a list ("jobs", "runs", "cis",
// "tickets", "audit", "runbooks") allows, sorted, and its default key and order.
func ListSorts(list string) (keys []string, def, defOrder string) {
	spec := lists[list]
	for k := range spec.sorts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	defOrder = OrderAsc
	if spec.defDesc {
		defOrder = OrderDesc
	}
	return keys, spec.defSort, defOrder
}

// cursorPos is what a cursor carries: the sort it belongs to, the row it
// names (its sort value and id, as text) and which side of it to read.
type cursorPos struct {
	Sort   string `json:"s"`
	Order  string `json:"o"`
	Before bool   `json:"b,omitempty"`
	Value  string `json:"v"`
	ID     string `json:"i"`
}

// keyset is one page's query over a list: its condition, order and
// limit, applied to a bun query or hand-built SQL alike.
type keyset struct {
	engine   Engine
	col, id  sortCol
	sort     string
	desc     bool
	at       *cursorPos
	limit    int
	sortArg  any
	idArg    any
	wantSize bool
}

// newKeyset checks p against the list's sorts: an unknown sort or order is
// a ValidationError naming it, a cursor not issued for this sort
// ErrBadCursor.
func newKeyset(engine Engine, list string, p Page) (*keyset, error) {
	spec := lists[list]
	k := &keyset{engine: engine, id: spec.id, sort: p.Sort, limit: clampLimit(p.Limit), wantSize: true}
	if k.sort == "" {
		k.sort = spec.defSort
	}
	col, ok := spec.sorts[k.sort]
	if !ok {
		keys, _, _ := ListSorts(list)
		return nil, invalid("invalid query", map[string]string{"sort": "must be one of " + strings.Join(keys, ", ")})
	}
	k.col = col
	switch p.Order {
	case "":
		k.desc = spec.defDesc
	case OrderAsc, OrderDesc:
		k.desc = p.Order == OrderDesc
	default:
		return nil, invalid("invalid query", map[string]string{"order": "must be asc or desc"})
	}
	if p.Cursor == "" {
		return k, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(p.Cursor)
	var at cursorPos
	if err != nil || json.Unmarshal(b, &at) != nil || at.Sort != k.sort || at.Order != k.order() {
		return nil, ErrBadCursor
	}
	if k.sortArg, err = k.parse(col.kind, at.Value); err != nil {
		return nil, ErrBadCursor
	}
	if k.idArg, err = k.parse(k.id.kind, at.ID); err != nil {
		return nil, ErrBadCursor
	}
	k.at = &at
	return k, nil
}

func (k *keyset) order() string {
	if k.desc {
		return OrderDesc
	}
	return OrderAsc
}

// parse turns a cursor's text back into a query argument of kind.
func (k *keyset) parse(kind colKind, v string) (any, error) {
	switch kind {
	case colInt:
		return strconv.ParseInt(v, 10, 64)
	case colTime:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, err
		}
		return timeArg(k.engine, t), nil
	}
	return v, nil
}

// timeArg is a time as a query argument. SQLite compares the text bun
// wrote, so the argument is that text (bun's layout, in UTC); hand-built
// statements hand arguments to the driver unformatted.
func timeArg(engine Engine, t time.Time) any {
	if engine == Postgres {
		return t.UTC()
	}
	return t.UTC().Format("2006-01-02 15:04:05.999999-07:00")
}

// backward reports whether rows are read against the sort order (a Prev
// cursor): the query reverses the order, and the page is turned back.
func (k *keyset) backward() bool { return k.at != nil && k.at.Before }

// where is the condition for rows past the cursor ("" without one).
func (k *keyset) where() (string, []any) {
	if k.at == nil {
		return "", nil
	}
	op := ">"
	if k.desc != k.backward() {
		op = "<"
	}
	if k.col.expr == k.id.expr {
		return k.id.expr + " " + op + " ?", []any{k.idArg}
	}
	return "(" + k.col.expr + " " + op + " ? OR (" + k.col.expr + " = ? AND " + k.id.expr + " " + op + " ?))",
		[]any{k.sortArg, k.sortArg, k.idArg}
}

// orderBy is the ORDER BY list of the query.
func (k *keyset) orderBy() string {
	dir := " ASC"
	if k.desc != k.backward() {
		dir = " DESC"
	}
	if k.col.expr == k.id.expr {
		return k.id.expr + dir
	}
	return k.col.expr + dir + ", " + k.id.expr + dir
}

// fetch is how many rows to read: one more than a page tells whether
// another page follows.
func (k *keyset) fetch() int { return k.limit + 1 }

// pageOf trims rows (read with fetch and orderBy) to the page, puts them
// in list order and builds the cursors. key returns a row's sort value
// and id.
func pageOf[T any](k *keyset, rows []T, key func(*T) (any, any)) ([]T, PageInfo) {
	info := PageInfo{Sort: k.sort, Order: k.order()}
	more := len(rows) > k.limit
	if more {
		rows = rows[:k.limit]
	}
	if k.backward() {
		slices.Reverse(rows)
	}
	if len(rows) == 0 {
		return rows, info
	}
	// Going forward, a cursor means rows came before; going back, the
	// cursor's row comes after.
	if (k.backward() && more) || (!k.backward() && k.at != nil) {
		v, id := key(&rows[0])
		info.Prev = encodeCursor(k, v, id, true)
	}
	if (!k.backward() && more) || k.backward() {
		v, id := key(&rows[len(rows)-1])
		info.Next = encodeCursor(k, v, id, false)
	}
	return rows, info
}

func encodeCursor(k *keyset, v, id any, before bool) string {
	b, _ := json.Marshal(cursorPos{Sort: k.sort, Order: k.order(), Before: before, Value: cursorText(v), ID: cursorText(id)})
	return base64.RawURLEncoding.EncodeToString(b)
}

func cursorText(v any) string {
	switch v := v.(type) {
	case int64:
		return strconv.FormatInt(v, 10)
	case int:
		return strconv.Itoa(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case string:
		return v
	}
	panic("schema: cursor value of unexpected type")
}

// scanPage runs q (a bun query over rows, its filters applied) as one
// page: the count of the filter, then the page itself.
func scanPage[T any](ctx context.Context, k *keyset, q *bun.SelectQuery, rows *[]T, key func(*T) (any, any)) ([]T, PageInfo, error) {
	var total int64
	if k.wantSize {
		var err error
		if total, err = q.Count(ctx); err != nil {
			return nil, PageInfo{}, err
		}
	}
	if w, args := k.where(); w != "" {
		q = q.Where(w, args...)
	}
	if err := q.OrderExpr(k.orderBy()).Limit(int64(k.fetch())).Scan(ctx); err != nil {
		return nil, PageInfo{}, err
	}
	out, info := pageOf(k, *rows, key)
	info.Total = int(total)
	return out, info, nil
}

// textSearch is a case-insensitive substring pattern for LIKE, with the
// LIKE wildcards of s taken out.
func textSearch(s string) string { return "%" + escapeLike(strings.ToLower(s)) + "%" }
