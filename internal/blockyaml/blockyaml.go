// Package blockyaml reads the block-style YAML subset of the configuration files the project
// ships (envoy/envoy.yaml, deploy/traefik.yml), for the tests that check them.
package blockyaml

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// ToJSON converts the block-style YAML subset of the shipped configuration files to JSON.
//
// The module has no YAML library in go.mod, and a configuration file needs only a small part of
// YAML: block mappings and sequences, plain and quoted scalars, comments, and the empty
// flow collections {} and []. Everything else (anchors, aliases, tags, block scalars,
// other flow collections, several documents, tabs in indentation) is an error rather
// than a guess, and so are plain scalars that YAML 1.1 and 1.2 read differently
// (yes, no, on, off, True, ...): quote them. Duplicate keys are errors, as in YAML.
func ToJSON(src []byte) ([]byte, error) {
	p := &yamlParser{}
	for i, raw := range strings.Split(string(src), "\n") {
		raw = strings.TrimRight(raw, " \r")
		text := strings.TrimLeft(raw, " ")
		indent := len(raw) - len(text)
		if strings.HasPrefix(text, "\t") {
			return nil, fmt.Errorf("line %d: tab in indentation", i+1)
		}
		text = strings.TrimRight(stripComment(text), " ")
		if text == "" {
			continue
		}
		if text == "---" || text == "..." || strings.HasPrefix(text, "%") {
			return nil, fmt.Errorf("line %d: directives and document markers are not supported", i+1)
		}
		p.lines = append(p.lines, yamlLine{no: i + 1, indent: indent, text: text})
	}
	if len(p.lines) == 0 {
		return nil, fmt.Errorf("empty document")
	}
	v, err := p.block(p.lines[0].indent)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.lines) {
		l := p.lines[p.pos]
		return nil, fmt.Errorf("line %d: unexpected indentation", l.no)
	}
	return json.Marshal(v)
}

type yamlLine struct {
	no     int
	indent int
	text   string
}

type yamlParser struct {
	lines []yamlLine
	pos   int
}

// block parses the mapping, sequence or scalar starting at the current line.
func (p *yamlParser) block(indent int) (any, error) {
	l := p.lines[p.pos]
	switch {
	case isSeqItem(l.text):
		return p.sequence(indent)
	case mappingColon(l.text) >= 0:
		return p.mapping(indent)
	default:
		p.pos++
		return scalar(l)
	}
}

func (p *yamlParser) mapping(indent int) (any, error) {
	m := map[string]any{}
	for p.pos < len(p.lines) {
		l := p.lines[p.pos]
		if l.indent < indent {
			break
		}
		if l.indent > indent {
			return nil, fmt.Errorf("line %d: unexpected indentation", l.no)
		}
		if isSeqItem(l.text) {
			return nil, fmt.Errorf("line %d: sequence item inside a mapping", l.no)
		}
		c := mappingColon(l.text)
		if c < 0 {
			return nil, fmt.Errorf("line %d: want \"key: value\", got %q", l.no, l.text)
		}
		key, err := scalar(yamlLine{no: l.no, text: l.text[:c]})
		if err != nil {
			return nil, err
		}
		k, ok := key.(string)
		if !ok {
			k = fmt.Sprint(key) // a key like 443 or true is still a JSON member name.
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("line %d: duplicate key %q", l.no, k)
		}
		rest := strings.TrimLeft(l.text[c+1:], " ")
		p.pos++
		var v any
		switch {
		case rest != "":
			if v, err = scalar(yamlLine{no: l.no, text: rest}); err != nil {
				return nil, err
			}
			if p.pos < len(p.lines) && p.lines[p.pos].indent > indent {
				return nil, fmt.Errorf("line %d: unexpected indentation", p.lines[p.pos].no)
			}
		case p.pos < len(p.lines) && p.lines[p.pos].indent > indent:
			if v, err = p.block(p.lines[p.pos].indent); err != nil {
				return nil, err
			}
		case p.pos < len(p.lines) && p.lines[p.pos].indent == indent && isSeqItem(p.lines[p.pos].text):
			// "key:" followed by "- item" at the key's own indentation.
			if v, err = p.sequence(indent); err != nil {
				return nil, err
			}
		}
		m[k] = v
	}
	return m, nil
}

func (p *yamlParser) sequence(indent int) (any, error) {
	s := []any{}
	for p.pos < len(p.lines) {
		l := p.lines[p.pos]
		if l.indent < indent || (l.indent == indent && !isSeqItem(l.text)) {
			break
		}
		if l.indent > indent {
			return nil, fmt.Errorf("line %d: unexpected indentation", l.no)
		}
		content := strings.TrimLeft(l.text[1:], " ")
		if content == "" {
			p.pos++
			if p.pos >= len(p.lines) || p.lines[p.pos].indent <= indent {
				s = append(s, nil)
				continue
			}
		} else {
			// Read "- key: value" as the first line of a block indented to the content,
			// which is where the item's further lines must be.
			p.lines[p.pos] = yamlLine{no: l.no, indent: indent + len(l.text) - len(content), text: content}
		}
		v, err := p.block(p.lines[p.pos].indent)
		if err != nil {
			return nil, err
		}
		s = append(s, v)
	}
	return s, nil
}

func isSeqItem(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

// mappingColon returns the index of the colon ending a mapping key, or -1.
func mappingColon(text string) int {
	if text[0] == '"' || text[0] == '\'' {
		end := closingQuote(text)
		if end < 0 || end+1 >= len(text) || text[end+1] != ':' {
			return -1
		}
		if end+2 == len(text) || text[end+2] == ' ' {
			return end + 1
		}
		return -1
	}
	if strings.HasPrefix(text, "- ") || strings.ContainsRune("{[", rune(text[0])) {
		return -1
	}
	if i := strings.Index(text, ": "); i >= 0 {
		return i
	}
	if strings.HasSuffix(text, ":") {
		return len(text) - 1
	}
	return -1
}

// closingQuote returns the index of the quote closing the quoted scalar text starts with.
func closingQuote(text string) int {
	q := text[0]
	for i := 1; i < len(text); i++ {
		switch {
		case q == '"' && text[i] == '\\':
			i++
		case text[i] == q && q == '\'' && i+1 < len(text) && text[i+1] == '\'':
			i++
		case text[i] == q:
			return i
		}
	}
	return -1
}

// stripComment removes a "#" comment, which starts a line or follows a space outside quotes.
func stripComment(text string) string {
	for i := 0; i < len(text); i++ {
		atToken := i == 0 || text[i-1] == ' '
		switch {
		case atToken && (text[i] == '"' || text[i] == '\''):
			end := closingQuote(text[i:])
			if end < 0 {
				return text // reported as a bad scalar later
			}
			i += end
		case atToken && text[i] == '#':
			return text[:i]
		}
	}
	return text
}

var (
	yamlInt   = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)
	yamlFloat = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)
	// Plain scalars that YAML 1.1 (and so some tools) read as booleans, or that YAML 1.2
	// reads as booleans or null in another spelling.
	yamlAmbiguous = regexp.MustCompile(`^(?i:y|n|yes|no|on|off|true|false|null)$`)
)

func scalar(l yamlLine) (any, error) {
	t := l.text
	switch {
	case t == "{}":
		return map[string]any{}, nil
	case t == "[]":
		return []any{}, nil
	case t[0] == '"':
		if closingQuote(t) != len(t)-1 {
			return nil, fmt.Errorf("line %d: bad double-quoted scalar %s", l.no, t)
		}
		s, err := strconv.Unquote(t)
		if err != nil {
			return nil, fmt.Errorf("line %d: bad double-quoted scalar %s: %w", l.no, t, err)
		}
		return s, nil
	case t[0] == '\'':
		if closingQuote(t) != len(t)-1 {
			return nil, fmt.Errorf("line %d: bad single-quoted scalar %s", l.no, t)
		}
		return strings.ReplaceAll(t[1:len(t)-1], "''", "'"), nil
	case strings.ContainsRune("{[]}&*!|>%@`,?", rune(t[0])):
		return nil, fmt.Errorf("line %d: unsupported YAML %q (quote plain strings that start with an indicator)", l.no, t)
	case t == "true":
		return true, nil
	case t == "false":
		return false, nil
	case t == "null" || t == "~":
		return nil, nil
	case yamlAmbiguous.MatchString(t):
		return nil, fmt.Errorf("line %d: ambiguous plain scalar %q: quote it or write true/false/null", l.no, t)
	case yamlInt.MatchString(t) || yamlFloat.MatchString(t):
		return json.Number(t), nil
	case strings.Contains(t, ": ") || strings.HasSuffix(t, ":"):
		return nil, fmt.Errorf("line %d: plain scalar %q contains a mapping colon", l.no, t)
	}
	return t, nil
}
