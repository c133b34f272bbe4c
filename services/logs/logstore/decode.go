package logstore

import (
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The line decoder. Segments are written by the e-mail platform, so every
// line is outside input: it may be truncated by a crash, hand-edited,
// written by a buggy or future producer. The erasure decides per line whom
// it belongs to, and that decision must be exactly the one a JSON parser
// would make, or a crafted line could hide a record from the erasure (an
// escaped key "account\u005fid", a second "account_id" key, a nested
// object holding one). Hence a small validating scanner instead of
// substring matching, fuzzed against encoding/json (FuzzAccountOf); and
// instead of encoding/json itself because it is the hot path of every
// rewrite (BenchmarkAccountOf: 600 MB/s against 100 MB/s, no allocation).

// maxNestingDepth is encoding/json's limit, so that both agree on which
// lines are valid.
const maxNestingDepth = 10000

// accountOf returns the account id of a segment line: the string value of
// the top-level key "account_id" of a JSON object, unescaped as
// encoding/json would unescape it (invalid UTF-8 and lone surrogates become
// U+FFFD). ok is false when the line is not exactly one valid JSON object
// (RFC 8259; white space around it allowed), or when "account_id" is
// missing, appears more than once (which value counts would be ambiguous)
// or holds anything but a string. Keys match exactly, after unescaping.
//
// The id aliases line or *scratch, which holds ids that needed unescaping
// and is reused by the next call; copy it to keep it.
func accountOf(line []byte, scratch *[]byte) (id []byte, ok bool) {
	s := lineScanner{b: line}
	s.skipWS()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return nil, false
	}
	s.i++
	s.skipWS()
	found := 0
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
	} else {
		for {
			s.skipWS()
			if s.i >= len(s.b) || s.b[s.i] != '"' {
				return nil, false
			}
			kStart, kEnd, kEsc, ok := s.str()
			if !ok {
				return nil, false
			}
			s.skipWS()
			if s.i >= len(s.b) || s.b[s.i] != ':' {
				return nil, false
			}
			s.i++
			s.skipWS()
			if isAccountKey(s.b[kStart:kEnd], kEsc) {
				found++
				if s.i < len(s.b) && s.b[s.i] == '"' {
					vStart, vEnd, vEsc, ok := s.str()
					if !ok {
						return nil, false
					}
					if vEsc || needsUnquote(s.b[vStart:vEnd]) {
						*scratch = unquote((*scratch)[:0], s.b[vStart:vEnd])
						id = *scratch
					} else {
						id = s.b[vStart:vEnd]
					}
				} else {
					// Any other value is scanned for validity and
					// makes the line no record of an account.
					if !s.value(1) {
						return nil, false
					}
					found = 2
				}
			} else if !s.value(1) {
				return nil, false
			}
			s.skipWS()
			if s.i >= len(s.b) {
				return nil, false
			}
			if s.b[s.i] == ',' {
				s.i++
				continue
			}
			if s.b[s.i] != '}' {
				return nil, false
			}
			s.i++
			break
		}
	}
	s.skipWS()
	if s.i != len(s.b) || found != 1 {
		return nil, false
	}
	return id, true
}

const accountKey = "account_id"

// isAccountKey reports whether the raw key (between its quotes) is
// "account_id" once unescaped. It leaves the caller's scratch alone: that
// may hold the id already found.
func isAccountKey(raw []byte, escaped bool) bool {
	if !escaped {
		return string(raw) == accountKey
	}
	// An escape is at least two bytes for one, so a longer raw key can
	// still unescape to ten bytes; a shorter one never can.
	if len(raw) < len(accountKey) {
		return false
	}
	var buf [2 * len(accountKey)]byte
	return string(unquote(buf[:0], raw)) == accountKey
}

// lineScanner validates JSON values in b from i on.
type lineScanner struct {
	b []byte
	i int
}

func (s *lineScanner) skipWS() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str scans the string that starts at s.i (a '"') and returns the bounds of
// its raw content and whether that holds an escape.
func (s *lineScanner) str() (start, end int, escaped, ok bool) {
	s.i++
	start = s.i
	b := s.b
	for i := s.i; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return start, i, escaped, true
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return 0, 0, false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+5 >= len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return 0, 0, false, false
				}
				i += 6
			default:
				return 0, 0, false, false
			}
		case c < 0x20:
			return 0, 0, false, false
		default:
			i++
		}
	}
	return 0, 0, false, false
}

// value scans any JSON value at s.i, inside containers nested depth deep.
func (s *lineScanner) value(depth int) bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, _, _, ok := s.str()
		return ok
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return false
}

func (s *lineScanner) object(depth int) bool {
	if depth > maxNestingDepth {
		return false
	}
	s.i++
	s.skipWS()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true
	}
	for {
		s.skipWS()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		if _, _, _, ok := s.str(); !ok {
			return false
		}
		s.skipWS()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.skipWS()
		if !s.value(depth) {
			return false
		}
		s.skipWS()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *lineScanner) array(depth int) bool {
	if depth > maxNestingDepth {
		return false
	}
	s.i++
	s.skipWS()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return true
	}
	for {
		s.skipWS()
		if !s.value(depth) {
			return false
		}
		s.skipWS()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *lineScanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?; the caller
// checks what follows.
func (s *lineScanner) number() bool {
	b := s.b
	i := s.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return false
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	s.i = i
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// needsUnquote reports whether raw string content without escapes still
// differs from its decoded form: encoding/json replaces invalid UTF-8.
func needsUnquote(raw []byte) bool {
	for _, c := range raw {
		if c >= utf8.RuneSelf {
			return !utf8.Valid(raw)
		}
	}
	return false
}

// unquote appends the decoded form of raw string content that str
// validated, following encoding/json's unquoteBytes: invalid UTF-8 and
// unpaired surrogates become U+FFFD.
func unquote(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\':
			switch raw[i+1] {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(raw[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
						if dec := utf16.DecodeRune(r, hex4(raw[i+2:])); dec != unicode.ReplacementChar {
							dst = utf8.AppendRune(dst, dec)
							i += 6
							continue
						}
					}
					r = unicode.ReplacementChar
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, raw[i+1])
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, unicode.ReplacementChar)
			} else {
				dst = append(dst, raw[i:i+size]...)
			}
			i += size
		}
	}
	return dst
}

// hex4 decodes four hex digits that str validated.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
