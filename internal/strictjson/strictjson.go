// Package strictjson reads JSON that must mean one thing to every reader: no object holds two
// members of one name (at any depth), nesting is bounded, and struct fields match by exact name.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of objects and arrays CheckMembers and Unmarshal accept.
const MaxDepth = 64

// Errors; match them with errors.Is.
var (
	// ErrDuplicateMember reports an object with two members of the same name. Readers that keep
	// the first and readers that keep the last would see two different documents.
	ErrDuplicateMember = errors.New("strictjson: duplicate object member")
	// ErrTooDeep reports nesting beyond MaxDepth.
	ErrTooDeep = errors.New("strictjson: nesting too deep")
	// ErrSyntax reports text whose structure CheckMembers cannot follow (unbalanced brackets,
	// an unterminated string).
	ErrSyntax = errors.New("strictjson: invalid JSON")
)

// DuplicateMemberError is the error CheckMembers returns for a member given twice: it matches
// ErrDuplicateMember and names the member (decoded, cut to 64 bytes) for messages.
type DuplicateMemberError struct {
	Name string
}

func (e *DuplicateMemberError) Error() string {
	return fmt.Sprintf("%s %q", ErrDuplicateMember, e.Name)
}

// Is makes errors.Is(err, ErrDuplicateMember) hold.
func (e *DuplicateMemberError) Is(target error) bool { return target == ErrDuplicateMember }

func duplicate(name string) error {
	if len(name) > 64 {
		name = strings.ToValidUTF8(name[:64], "")
	}
	return &DuplicateMemberError{Name: name}
}

// linearKeys is how many members of one object are compared pairwise before the object's
// names go into a map: tokens and request bodies have a few dozen members, and comparing
// them costs less than building a map.
const linearKeys = 32

// name is one member name of an open object: a view into the text, or its decoded form when
// the text holds escapes or invalid UTF-8 (encoding/json reads "\u0061" as "a" and replaces
// invalid bytes, so the raw bytes alone could hide a duplicate).
type name struct {
	start, end int
	decoded    string
	escaped    bool
}

type frame struct {
	object    bool
	expectKey bool
	first     int // index in names of this object's first member
	seen      map[string]struct{}
}

// CheckMembers reports a *DuplicateMemberError (ErrDuplicateMember) when an object anywhere in data has two members
// whose names decode to the same string, ErrTooDeep beyond MaxDepth, and ErrSyntax when it
// cannot follow the structure. It does not validate the rest of the grammar (numbers,
// literals): callers decode data afterwards, which does. It allocates nothing for documents
// of ordinary shape.
func CheckMembers(data []byte) error {
	var frames [MaxDepth]frame
	var buf [linearKeys]name
	names := buf[:0]
	depth := 0
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '{', '[':
			if depth == MaxDepth {
				return ErrTooDeep
			}
			frames[depth] = frame{object: c == '{', expectKey: c == '{', first: len(names)}
			depth++
		case '}', ']':
			if depth == 0 || frames[depth-1].object != (c == '}') {
				return ErrSyntax
			}
			depth--
			names = names[:frames[depth].first]
			frames[depth].seen = nil
		case ',':
			if depth > 0 && frames[depth-1].object {
				frames[depth-1].expectKey = true
			}
		case '"':
			end, escaped, ascii := stringEnd(data, i+1)
			if end < 0 {
				return ErrSyntax
			}
			if depth > 0 && frames[depth-1].expectKey {
				f := &frames[depth-1]
				f.expectKey = false
				n := name{start: i + 1, end: end, escaped: escaped || !ascii && !utf8.Valid(data[i+1:end])}
				if n.escaped {
					var ok bool
					if n.decoded, ok = decodeString(data[i : end+1]); !ok {
						return ErrSyntax
					}
				}
				var err error
				if names, err = addName(data, f, names, n); err != nil {
					return err
				}
			}
			i = end
		}
	}
	if depth != 0 {
		return ErrSyntax
	}
	return nil
}

// stringEnd returns the index of the quote closing the string whose contents start at i, or
// -1; escaped reports a backslash inside and ascii that every byte is below 0x80.
func stringEnd(data []byte, i int) (end int, escaped, ascii bool) {
	ascii = true
	for ; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			return i, escaped, ascii
		case c == '\\':
			escaped = true
			i++
		case c >= 0x80:
			ascii = false
		}
	}
	return -1, escaped, ascii
}

// decodeString decodes a quoted JSON string the way encoding/json does. It is apart from
// CheckMembers so that only names that need decoding cost an allocation.
func decodeString(quoted []byte) (string, bool) {
	var s string
	err := json.Unmarshal(quoted, &s)
	return s, err == nil
}

func (n *name) text(data []byte) string {
	if n.escaped {
		return n.decoded
	}
	return string(data[n.start:n.end])
}

func sameName(data []byte, a, b *name) bool {
	switch {
	case !a.escaped && !b.escaped:
		return bytes.Equal(data[a.start:a.end], data[b.start:b.end])
	case a.escaped && b.escaped:
		return a.decoded == b.decoded
	case a.escaped:
		return a.decoded == string(data[b.start:b.end])
	default:
		return b.decoded == string(data[a.start:a.end])
	}
}

// addName records n as a member of f's object, or reports it as a duplicate.
func addName(data []byte, f *frame, names []name, n name) ([]name, error) {
	if f.seen != nil {
		k := n.text(data)
		if _, dup := f.seen[k]; dup {
			return names, duplicate(k)
		}
		f.seen[k] = struct{}{}
		return names, nil
	}
	members := names[f.first:]
	for i := range members {
		if sameName(data, &members[i], &n) {
			return names, duplicate(n.text(data))
		}
	}
	if len(members) < linearKeys {
		return append(names, n), nil
	}
	// A large object: its names move into a map, and only the map is consulted from now on.
	f.seen = make(map[string]struct{}, 2*linearKeys)
	for i := range members {
		f.seen[members[i].text(data)] = struct{}{}
	}
	f.seen[n.text(data)] = struct{}{}
	return names[:f.first], nil
}

// Unmarshal decodes data, which must hold exactly one JSON value, into v (a pointer). Besides
// what CheckMembers refuses, it refuses members that match no field of the struct they are
// decoded into, comparing names exactly: encoding/json alone would accept "Name" for a field
// named "name", and ignore unknown members. Values decoded by their own UnmarshalJSON, into an
// interface or into json.RawMessage are checked for duplicates only.
func Unmarshal(data []byte, v any) error {
	if err := CheckMembers(data); err != nil {
		return err
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errors.New("strictjson: Unmarshal needs a non-nil pointer")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := checkNames(dec, rv.Type().Elem(), 0); err != nil {
		return err
	}
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("more than one value")
	}
	return nil
}

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textType        = reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()
)

// checkNames reads one value from dec and checks every member name against the struct fields
// of t at the same place; t == nil means "any names" (maps, interfaces, custom decoders).
func checkNames(dec *json.Decoder, t reflect.Type, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= MaxDepth {
		return ErrTooDeep
	}
	t = structural(t)
	switch d {
	case '{':
		var fields map[string]reflect.Type
		var elem reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = fieldsOf(t)
		} else if t != nil && t.Kind() == reflect.Map {
			elem = t.Elem()
		}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := kt.(string)
			next := elem
			if fields != nil {
				ft, ok := fields[key]
				if !ok {
					return unknownField(fields, key)
				}
				next = ft
			}
			if err := checkNames(dec, next, depth+1); err != nil {
				return err
			}
		}
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for dec.More() {
			if err := checkNames(dec, elem, depth+1); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

// structural returns the type whose fields or elements a JSON value fills, or nil when the
// value is decoded some other way (interface, a custom decoder).
func structural(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() == reflect.Interface ||
		reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textType) {
		return nil
	}
	return t
}

func unknownField(fields map[string]reflect.Type, key string) error {
	for f := range fields {
		if strings.EqualFold(f, key) {
			return fmt.Errorf("json: unknown field %q (field names are case-sensitive: did you mean %q?)", key, f)
		}
	}
	return fmt.Errorf("json: unknown field %q", key)
}

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// fieldsOf returns the JSON member names of struct t with the type each one decodes into,
// following encoding/json's rules for tags and embedded structs.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	addFields(t, m, 0)
	fieldCache.Store(t, m)
	return m
}

func addFields(t reflect.Type, m map[string]reflect.Type, depth int) {
	// A struct's own fields come before those promoted from embedded structs, which they hide.
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				embedded = append(embedded, et)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, ok := m[name]; !ok {
			m[name] = f.Type
		}
	}
	if depth < MaxDepth {
		for _, et := range embedded {
			addFields(et, m, depth+1)
		}
	}
}
