package routes

import (
	"bytes"
	"errors"
	"strings"
	"unicode/utf8"
)

// MaxPathLen bounds the path part (before '?' or '#') of a request target, in bytes. Envoy's and
// nginx's default limits are in the same range; a longer path is refused rather than scanned.
const MaxPathLen = 8 << 10

// ErrBadPath reports a request path that cannot be normalised without guessing how the upstream
// would read it. The caller denies the request (it is never retried as another path).
var ErrBadPath = errors.New("routes: bad request path")

// pathError is a preallocated ErrBadPath with detail, so refusing hostile input never allocates.
type pathError struct{ why string }

func (e *pathError) Error() string        { return "routes: bad request path: " + e.why }
func (e *pathError) Is(target error) bool { return target == ErrBadPath }

var dotSemi, dotDotSemi = []byte(".;"), []byte("..;")

var (
	errPathEmpty        error = &pathError{"empty or not starting with '/'"}
	errPathTooLong      error = &pathError{"longer than 8 KiB"}
	errPathControl      error = &pathError{"control character"}
	errPathPercent      error = &pathError{"invalid percent-encoding"}
	errPathSlash        error = &pathError{"encoded '/' or '\\' in a segment"}
	errPathBackslash    error = &pathError{"backslash"}
	errPathDoubleEnc    error = &pathError{"double-encoded '/', '\\' or '.'"}
	errPathUTF8         error = &pathError{"invalid UTF-8 or a C1 control character"}
	errPathAboveRoot    error = &pathError{"'..' above the root"}
	errPathDotSemicolon error = &pathError{"dot segment with ';' parameters"}
)

// pchar marks the bytes that stand for themselves in a canonical segment: RFC 3986 unreserved,
// sub-delims, ':' and '@'. They are all legal unencoded in a path segment and none changes the
// path's structure, so "%21" and "!" are the same segment to us and to every upstream that decodes.
// Every other byte appears in canonical form only as %XX (uppercase hex), so canonical text and
// fully decoded text correspond one to one.
var pchar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~!$&'()*+,;=:@" {
		t[c] = true
	}
	return t
}()

const upperHex = "0123456789ABCDEF"

// NormalizePath returns the canonical form of a request target's path, the form Match matches
// templates against; see the package documentation for the rules. The result starts with '/',
// has no empty, "." or ".." segments, no trailing slash (except "/" itself), no '?' or '#', and
// NormalizePath(result) == result. A path that needs no change is returned without allocating.
func NormalizePath(rawPath string) (string, error) {
	p := rawPath
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		// The query and fragment never affect matching, but control characters there still
		// mark a request no honest client sends; refusing them costs one scan.
		if hasControl(p[i:]) {
			return "", errPathControl
		}
		p = p[:i]
	}
	if len(p) > MaxPathLen {
		return "", errPathTooLong
	}
	if p == "" || p[0] != '/' {
		return "", errPathEmpty
	}
	if isCanonical(p) {
		return p, nil
	}
	return canonicalize(p)
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}

// isCanonical reports whether p (starting with '/') is already canonical and contains nothing the
// slow path must look at: only pchar bytes, no '%', no empty or dot segments, no trailing slash.
func isCanonical(p string) bool {
	if p == "/" {
		return true
	}
	start := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) {
			c := p[i]
			if c != '/' {
				if !pchar[c] {
					return false
				}
				continue
			}
		}
		seg := p[start:i]
		if seg == "" || seg[0] == '.' && (len(seg) == 1 || seg[1] == '.' || seg[1] == ';') {
			// Empty, ".", "..", ".;..." and "..<anything>" go the slow way; it decides.
			return false
		}
		start = i + 1
	}
	return true
}

// canonicalize is the slow path of NormalizePath: decode, re-encode canonically, check each
// segment, resolve dot segments.
func canonicalize(p string) (string, error) {
	buf := make([]byte, 0, len(p)+8)
	var scratch [128]byte
	for i := 1; i <= len(p); {
		j := strings.IndexByte(p[i:], '/')
		if j < 0 {
			j = len(p)
		} else {
			j += i
		}
		raw := p[i:j]
		i = j + 1

		segStart := len(buf)
		buf = append(buf, '/')
		var err error
		buf, err = appendCanonicalSegment(buf, raw)
		if err != nil {
			return "", err
		}
		seg := buf[segStart+1:]
		switch {
		case len(seg) == 0 || string(seg) == ".":
			buf = buf[:segStart]
		case string(seg) == "..":
			buf = buf[:segStart]
			k := lastSlash(buf)
			if k < 0 {
				return "", errPathAboveRoot
			}
			buf = buf[:k]
		case bytes.HasPrefix(seg, dotSemi) || bytes.HasPrefix(seg, dotDotSemi):
			// Tomcat and Spring read "..;x" as "..": a public "/api/public/..;/admin" would
			// reach /api/admin upstream while we matched it as a public route.
			return "", errPathDotSemicolon
		default:
			if err := checkSegment(seg, scratch[:0]); err != nil {
				return "", err
			}
		}
	}
	if len(buf) == 0 {
		return "/", nil
	}
	// Re-encoding can triple a segment (raw UTF-8 becomes %XX); bounding the result too keeps
	// every normalised path a valid input, so normalising is idempotent.
	if len(buf) > MaxPathLen {
		return "", errPathTooLong
	}
	return string(buf), nil
}

func lastSlash(b []byte) int {
	for k := len(b) - 1; k >= 0; k-- {
		if b[k] == '/' {
			return k
		}
	}
	return -1
}

// appendCanonicalSegment appends the canonical form of one raw segment (no '/' inside) to buf.
func appendCanonicalSegment(buf []byte, raw string) ([]byte, error) {
	for k := 0; k < len(raw); k++ {
		c := raw[k]
		switch {
		case c == '%':
			if k+2 >= len(raw) || !isHex(raw[k+1]) || !isHex(raw[k+2]) {
				return buf, errPathPercent
			}
			v := unhex(raw[k+1])<<4 | unhex(raw[k+2])
			k += 2
			switch {
			case v == '/' || v == '\\':
				// Proxies disagree on "%2F": Envoy keeps it, some decode it into a separator,
				// some reject it. Whatever we chose, one upstream would see another resource
				// than the one we decided on, so we refuse.
				return buf, errPathSlash
			case v < 0x20 || v == 0x7f:
				return buf, errPathControl
			case pchar[v]:
				buf = append(buf, v)
			default:
				buf = append(buf, '%', upperHex[v>>4], upperHex[v&0xf])
			}
		case c == '\\':
			// Some servers (IIS, some Windows-hosted apps) treat '\' as '/'.
			return buf, errPathBackslash
		case c < 0x20 || c == 0x7f:
			return buf, errPathControl
		case pchar[c]:
			buf = append(buf, c)
		default:
			// Unencoded bytes not allowed in a path (space, '"', non-ASCII UTF-8, ...) get
			// their single canonical spelling; UTF-8 validity is checked on the segment.
			buf = append(buf, '%', upperHex[c>>4], upperHex[c&0xf])
		}
	}
	return buf, nil
}

// checkSegment refuses a canonical segment that decodes to invalid UTF-8 (overlong encodings such
// as %C0%AE are an old way to smuggle '.') or to a C1 control, and one that carries a
// double-encoded '/', '\' or '.' ("%252F"), which an upstream that decodes twice would read as
// structure.
func checkSegment(seg, scratch []byte) error {
	if bytes.IndexByte(seg, '%') < 0 {
		return nil
	}
	for k := 0; k+4 < len(seg); k++ {
		if seg[k] == '%' && seg[k+1] == '2' && seg[k+2] == '5' {
			a, b := seg[k+3], seg[k+4]|0x20
			if a == '2' && (b == 'f' || b == 'e') || a == '5' && b == 'c' {
				return errPathDoubleEnc
			}
		}
	}
	dec := appendDecoded(scratch, seg)
	if !utf8.Valid(dec) {
		return errPathUTF8
	}
	for len(dec) > 0 {
		r, n := utf8.DecodeRune(dec)
		if r >= 0x80 && r <= 0x9f {
			return errPathUTF8
		}
		dec = dec[n:]
	}
	return nil
}

// appendDecoded appends the percent-decoded form of canonical text s to b. s has been produced by
// canonicalize, so every '%' is followed by two hex digits.
func appendDecoded[S string | []byte](b []byte, s S) []byte {
	for k := 0; k < len(s); k++ {
		if s[k] == '%' && k+2 < len(s) {
			b = append(b, unhex(s[k+1])<<4|unhex(s[k+2]))
			k += 2
			continue
		}
		b = append(b, s[k])
	}
	return b
}

// decode returns the decoded text of canonical text s; it allocates only when s has a '%'.
func decode(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	return string(appendDecoded(make([]byte, 0, len(s)), s))
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
