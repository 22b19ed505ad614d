package decision

import (
	"errors"
	"strings"
)

// Level is the RBAC level a set, a code or a request belongs to.
type Level uint8

// Levels. The zero value is invalid so that a forgotten field never selects a level by accident.
const (
	LevelTenant   Level = 1
	LevelPlatform Level = 2
)

// String returns "tenant", "platform" or "invalid".
func (l Level) String() string {
	switch l {
	case LevelTenant:
		return "tenant"
	case LevelPlatform:
		return "platform"
	}
	return "invalid"
}

func (l Level) valid() bool { return l == LevelTenant || l == LevelPlatform }

// Scope is the rank of a scope within its level (1 lowest, 3 top), or ScopeAny for a stored '*'.
// Ranks are level-independent so that one engine serves both levels; Name gives the word.
type Scope uint8

// Scope ranks. ScopeNone is the zero value and never valid in a code.
const (
	ScopeNone   Scope = 0
	ScopeLow    Scope = 1
	ScopeMiddle Scope = 2
	ScopeTop    Scope = 3
	ScopeAny    Scope = 4
)

// Tenant-level scope names: own < team < tenant.
const (
	ScopeOwn    = ScopeLow
	ScopeTeam   = ScopeMiddle
	ScopeTenant = ScopeTop
)

// Platform-level scope names: user < tenant < platform. The word "tenant" is the middle rank here.
const (
	ScopeUser           = ScopeLow
	ScopePlatformTenant = ScopeMiddle
	ScopePlatform       = ScopeTop
)

var scopeNames = [3][5]string{
	LevelTenant:   {ScopeLow: "own", ScopeMiddle: "team", ScopeTop: "tenant", ScopeAny: "*"},
	LevelPlatform: {ScopeLow: "user", ScopeMiddle: "tenant", ScopeTop: "platform", ScopeAny: "*"},
}

// Name returns the scope's word at level, or "" when the scope or level is invalid.
func (s Scope) Name(level Level) string {
	if !level.valid() || s > ScopeAny {
		return ""
	}
	return scopeNames[level][s]
}

// scopeByName maps a concrete scope word to its rank at level; '*' is not concrete.
func scopeByName(level Level, name string) Scope {
	for s := ScopeLow; s <= ScopeTop; s++ {
		if scopeNames[level][s] == name {
			return s
		}
	}
	return ScopeNone
}

// Errors. Callers match them with errors.Is; the concrete values may carry more detail.
var (
	// ErrInvalidCode reports a stored grant or deny code that does not parse.
	ErrInvalidCode = errors.New("decision: invalid permission code")
	// ErrInvalidRequest reports a check request that is malformed; it is an API error, not a decision.
	ErrInvalidRequest = errors.New("decision: invalid request")
	// ErrInvalidInput reports Input that cannot be compiled at all (for example an unknown level).
	ErrInvalidInput = errors.New("decision: invalid input")
	// ErrInvalidEncoding reports bytes that are not a valid encoded Set.
	ErrInvalidEncoding = errors.New("decision: invalid encoding")
	// ErrNilSet reports a Check on a nil *Set.
	ErrNilSet = errors.New("decision: nil set")
)

// requestError is a preallocated ErrInvalidRequest with detail, so that returning it never allocates.
type requestError struct{ msg string }

func (e *requestError) Error() string        { return "decision: invalid request: " + e.msg }
func (e *requestError) Is(target error) bool { return target == ErrInvalidRequest }

var (
	errReqSegments    error = &requestError{"permission must be resource.action or resource.action.scope"}
	errReqSegment     error = &requestError{"segments must be lowercase [a-z0-9_-]+"}
	errReqWildcard    error = &requestError{"a request must not contain '*'"}
	errReqScope       error = &requestError{"scope is not a scope of this level"}
	errReqLevel       error = &requestError{"invalid level"}
	errReqResourceArg error = &requestError{"a code check (resource.action.scope) must not carry a resource"}
	errReqNoResource  error = &requestError{"a resource check (resource.action) needs a resource"}
)

// Code is a parsed stored grant or deny code. A wildcard segment has its flag set and its string "*".
type Code struct {
	Level       Level
	Resource    string
	Action      string
	Scope       Scope // ScopeAny for '*'
	AnyResource bool
	AnyAction   bool
}

// String re-serialises the code; for every code ParseCode accepted it returns the parsed text.
func (c Code) String() string {
	return c.Resource + "." + c.Action + "." + c.Scope.Name(c.Level)
}

// ParseCode parses a stored code "resource.action.scope" at level; any whole segment may be '*'.
func ParseCode(level Level, s string) (Code, error) {
	if !level.valid() {
		return Code{}, codeErr(s, "invalid level")
	}
	r, rest, ok := strings.Cut(s, ".")
	if !ok {
		return Code{}, codeErr(s, "want resource.action.scope")
	}
	a, sc, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(sc, '.') >= 0 {
		return Code{}, codeErr(s, "want resource.action.scope")
	}
	c := Code{Level: level, Resource: r, Action: a}
	switch {
	case r == "*":
		c.AnyResource = true
	case !validSegment(r):
		return Code{}, codeErr(s, "bad resource segment")
	}
	switch {
	case a == "*":
		c.AnyAction = true
	case !validSegment(a):
		return Code{}, codeErr(s, "bad action segment")
	}
	if sc == "*" {
		c.Scope = ScopeAny
	} else if c.Scope = scopeByName(level, sc); c.Scope == ScopeNone {
		return Code{}, codeErr(s, "scope is not a scope of the "+level.String()+" level")
	}
	return c, nil
}

func codeErr(s, why string) error {
	return &codeError{code: s, why: why}
}

type codeError struct{ code, why string }

func (e *codeError) Error() string {
	return "decision: invalid permission code " + quote(e.code) + ": " + e.why
}
func (e *codeError) Is(target error) bool { return target == ErrInvalidCode }

// quote bounds what untrusted text can put into a log line.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return "\"" + strings.ToValidUTF8(s, "?") + "\""
}

// ParseRequest parses a requested permission: "r.a.s" (a code check) or "r.a" (a resource check).
// It never allocates: the returned strings share s's memory and errors are preallocated.
func ParseRequest(level Level, s string) (resource, action string, scope Scope, hasScope bool, err error) {
	if !level.valid() {
		return "", "", ScopeNone, false, errReqLevel
	}
	i := strings.IndexByte(s, '.')
	if i < 0 {
		return "", "", ScopeNone, false, errReqSegments
	}
	resource, rest := s[:i], s[i+1:]
	action = rest
	if j := strings.IndexByte(rest, '.'); j >= 0 {
		action = rest[:j]
		sc := rest[j+1:]
		if strings.IndexByte(sc, '.') >= 0 {
			return "", "", ScopeNone, false, errReqSegments
		}
		if err := checkRequestSegment(sc); err != nil {
			return "", "", ScopeNone, false, err
		}
		if scope = scopeByName(level, sc); scope == ScopeNone {
			return "", "", ScopeNone, false, errReqScope
		}
		hasScope = true
	}
	if err := checkRequestSegment(resource); err != nil {
		return "", "", ScopeNone, false, err
	}
	if err := checkRequestSegment(action); err != nil {
		return "", "", ScopeNone, false, err
	}
	return resource, action, scope, hasScope, nil
}

// segmentByte marks the bytes a segment may contain; checks read one table entry per byte.
var segmentByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['_'], t['-'] = true, true
	return t
}()

// checkRequestSegment validates one segment of a request in a single pass; only a segment
// that fails is looked at again, to tell a '*' from any other bad byte.
func checkRequestSegment(seg string) error {
	if seg == "" {
		return errReqSegment
	}
	for i := 0; i < len(seg); i++ {
		if !segmentByte[seg[i]] {
			if strings.IndexByte(seg, '*') >= 0 {
				return errReqWildcard
			}
			return errReqSegment
		}
	}
	return nil
}

// validSegment reports whether seg is a non-empty lowercase [a-z0-9_-]+ word.
func validSegment(seg string) bool {
	if seg == "" {
		return false
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}
