package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// maxBody caps request bodies, JSON or a raw document.
const maxBody = 1 << 20

// yamlMediaTypes are the media types of a raw YAML document sent as the
// whole body (a runbook, for one). YAML is a superset of JSON, so such a
// body may be a JSON document too.
var yamlMediaTypes = []string{"application/yaml", "text/yaml", "application/x-yaml"}

// decodeJSON reads the request body strictly into v: JSON content type, one
// object, no unknown fields, every type mismatch named by its field.
func decodeJSON(c echo.Context, v any) error {
	if mt, err := mediaType(c); err != nil || (mt != "" && mt != echo.MIMEApplicationJSON) {
		return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "Content-Type must be application/json")
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	return decodeBody(body, v)
}

// decodeJSONOrDocument reads a body that is either JSON, decoded into v as
// decodeJSON does (doc nil), or, sent with a YAML media type, a raw
// document returned as it came (checked by decodeDocument).
func decodeJSONOrDocument(c echo.Context, v any) (doc []byte, err error) {
	mt, err := mediaType(c)
	if err != nil || (mt != "" && mt != echo.MIMEApplicationJSON && !slices.Contains(yamlMediaTypes, mt)) {
		return nil, newError(http.StatusUnsupportedMediaType, CodeUnsupportedMedia,
			"Content-Type must be application/json or a YAML type ("+strings.Join(yamlMediaTypes, ", ")+")")
	}
	body, err := readBody(c)
	if err != nil {
		return nil, err
	}
	if slices.Contains(yamlMediaTypes, mt) {
		return body, decodeDocument(body)
	}
	return nil, decodeBody(body, v)
}

// mediaType is the request's media type, lowercase; "" when none is sent.
func mediaType(c echo.Context) (string, error) {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if ct == "" {
		return "", nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	return mt, err
}

// readBody reads the whole body, at most maxBody bytes.
func readBody(c echo.Context) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, newError(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("request body exceeds %d bytes", maxBody))
		}
		return nil, newError(http.StatusBadRequest, CodeBadRequest, "reading request body failed")
	}
	return body, nil
}

// decodeDocument checks a raw document body as checkText checks JSON
// strings: text a person wrote, so valid UTF-8 without NUL or control
// characters but tab and newlines. A bad character is a 422 naming its
// line and column.
func decodeDocument(body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return newError(http.StatusBadRequest, CodeBadRequest, "request body is required")
	}
	line, col := 1, 1
	for i := 0; i < len(body); {
		r, size := utf8.DecodeRune(body[i:])
		reason := ""
		switch {
		case r == utf8.RuneError && size <= 1:
			reason = "must be valid UTF-8 text"
		case r == 0:
			reason = "must not contain NUL characters"
		case r < 0x20 && r != '\t' && r != '\n' && r != '\r':
			reason = fmt.Sprintf("must not contain control characters (U+%04X)", r)
		}
		if reason != "" {
			return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid body",
				Fields: map[string]string{"body": fmt.Sprintf("line %d, column %d: %s", line, col, reason)}}
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return nil
}

// decodeBody is decodeJSON without the HTTP parts; it is fuzzed.
func decodeBody(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return newError(http.StatusBadRequest, CodeInvalidJSON, "request body is required")
	}
	if err := checkText(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return newError(http.StatusBadRequest, CodeInvalidJSON, "request body must hold a single JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return newError(http.StatusBadRequest, CodeInvalidJSON, "unexpected data after the JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return newError(http.StatusBadRequest, CodeInvalidJSON, fmt.Sprintf("malformed JSON at byte %d: %s", syn.Offset, syn.Error()))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return newError(http.StatusBadRequest, CodeInvalidJSON, "malformed JSON: unexpected end of input")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return newError(http.StatusBadRequest, CodeInvalidJSON, fmt.Sprintf("request body must be a JSON object, not %s", typ.Value))
		}
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid " + field,
			Fields: map[string]string{field: fmt.Sprintf("must be %s, not %s", typeName(typ.Type.Kind().String()), typ.Value)}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "unknown field " + name,
			Fields: map[string]string{name: "unknown field"}}
	}
	return newError(http.StatusBadRequest, CodeInvalidJSON, "malformed JSON: "+err.Error())
}

func typeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "ptr":
		return "a value"
	}
	return "a " + kind
}

// checkText refuses text no field has a use for, naming the field by its
// JSON path (members[2], spec.levels[0].users[1]): NUL and other C0
// control characters except tab, newline and carriage return, invalid
// UTF-8 and lone UTF-16 surrogates (\ud800). encoding/json would turn the
// last two into U+FFFD without a word and store the NUL, which PostgreSQL
// then refuses in the middle of a write. Malformed JSON is left to the
// decoder, which names the byte.
func checkText(body []byte) error {
	clean := utf8.Valid(body) && !hasLoneSurrogate(body)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		array bool
		index int
		key   string
		isKey bool // the next string in this object is a key
	}
	var stack []*frame
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.array {
				b.WriteString("[" + strconv.Itoa(f.index) + "]")
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		}
		return b.String()
	}
	// done moves the innermost container past the value just read.
	done := func() {
		if len(stack) == 0 {
			return
		}
		if f := stack[len(stack)-1]; f.array {
			f.index++
		} else {
			f.isKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			break // io.EOF, or malformed JSON the decoder reports
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, &frame{isKey: true})
			case '[':
				stack = append(stack, &frame{array: true})
			default:
				stack = stack[:len(stack)-1]
				done()
			}
			continue
		case string:
			top := (*frame)(nil)
			if len(stack) > 0 {
				top = stack[len(stack)-1]
			}
			if top != nil && !top.array && top.isKey {
				top.key, top.isKey = t, false
				if reason := badText(t, clean); reason != "" {
					name := path()
					return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid field name " + strconv.QuoteToASCII(name),
						Fields: map[string]string{strconv.QuoteToASCII(name): reason}}
				}
				continue
			}
			if reason := badText(t, clean); reason != "" {
				name := path()
				if name == "" {
					name = "body"
				}
				return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: "invalid " + name,
					Fields: map[string]string{name: reason}}
			}
		}
		done()
	}
	if !clean {
		// Only reachable when the bad bytes sit outside any string.
		return newError(http.StatusBadRequest, CodeInvalidJSON, "request body is not valid UTF-8")
	}
	return nil
}

// badText says what is wrong with s, or "". In a body that is not clean
// (invalid UTF-8 or a lone surrogate somewhere) every U+FFFD is taken for
// what the decoder made of a bad sequence.
func badText(s string, clean bool) string {
	for _, r := range s {
		switch {
		case r == 0:
			return "must not contain NUL characters"
		case r < 0x20 && r != '\t' && r != '\n' && r != '\r':
			return fmt.Sprintf("must not contain control characters (U+%04X)", r)
		case r == utf8.RuneError && !clean:
			return "must be valid UTF-8 text (no invalid bytes or lone surrogates)"
		}
	}
	return ""
}

// hasLoneSurrogate reports a \uD800-\uDFFF escape inside a JSON string that
// is not half of a well-formed pair.
func hasLoneSurrogate(body []byte) bool {
	in := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !in {
			in = c == '"'
			continue
		}
		switch c {
		case '"':
			in = false
		case '\\':
			if i+1 < len(body) && body[i+1] == 'u' {
				r, ok := hex4(body, i+2)
				switch {
				case !ok:
				case r >= 0xD800 && r < 0xDC00:
					if i+11 < len(body) && body[i+6] == '\\' && body[i+7] == 'u' {
						if lo, ok := hex4(body, i+8); ok && lo >= 0xDC00 && lo < 0xE000 {
							i += 11
							continue
						}
					}
					return true
				case r >= 0xDC00 && r < 0xE000:
					return true
				}
			}
			i++ // skip the escaped character
		}
	}
	return false
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[at:at+4]), 16, 16)
	return rune(n), err == nil
}
