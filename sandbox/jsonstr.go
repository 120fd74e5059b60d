package sandbox

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// File data travels as a JSON string, as in Mesos's /files/read. Mesos writes
// the file's bytes as they are (escaping only quotes, backslashes and control
// characters), so an offset plus len(data) is the next offset even for bytes
// that are not UTF-8. encoding/json would turn such bytes into U+FFFD and
// break that arithmetic, so these two functions do the encoding by hand. They
// are also several times faster on log text, which matters for the
// throughput target.

// jsonSafe[b] is true for bytes copied unchanged.
var jsonSafe = func() (t [256]bool) {
	for i := range t {
		t[i] = i >= 0x20 && i != '"' && i != '\\' && i != 0xE2
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendJSONString appends src as a quoted JSON string. With js, U+2028 and
// U+2029 are escaped too, so that JSONP answers stay valid JavaScript for
// engines older than ES2019; JSON itself does not need it.
func appendJSONString(dst, src []byte, js bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(src); {
		// Most log text needs nothing: skip it eight bytes at a time, and
		// jump straight to the first byte that may need something.
		for i+16 <= len(src) && special8(binary.LittleEndian.Uint64(src[i:]), js)|special8(binary.LittleEndian.Uint64(src[i+8:]), js) == 0 {
			i += 16
		}
		if i+8 <= len(src) {
			m := special8(binary.LittleEndian.Uint64(src[i:]), js)
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
		} else if i == len(src) {
			break
		}
		c := src[i]
		if jsonSafe[c] {
			i++
			continue
		}
		if c == 0xE2 {
			if js && i+2 < len(src) && src[i+1] == 0x80 && (src[i+2] == 0xA8 || src[i+2] == 0xA9) {
				dst = append(dst, src[start:i]...)
				dst = append(dst, `\u202`...)
				dst = append(dst, hexDigits[src[i+2]&0xF])
				i += 3
				start = i
				continue
			}
			i++
			continue
		}
		dst = append(dst, src[start:i]...)
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		i++
		start = i
	}
	dst = append(dst, src[start:]...)
	return append(dst, '"')
}

// special8 flags (in bit 7 of each byte) the bytes of x that are control
// characters, '"', '\\' or, with js, 0xE2 (the lead byte of U+2028 and U+2029), with
// the classic "has a zero byte" and "has a byte less than n" word tricks.
// Bytes above a flagged one may be flagged wrongly (a borrow runs upwards),
// but the lowest flag is always right and none is missed, which is all the
// encoder needs: it jumps to the lowest flag and looks at that byte.
func special8(x uint64, js bool) uint64 {
	const (
		lo = 0x0101010101010101
		hi = 0x8080808080808080
	)
	q := x ^ (lo * '"')
	b := x ^ (lo * '\\')
	m := (x - lo*0x20) &^ x
	m |= (q - lo) &^ q
	m |= (b - lo) &^ b
	if js {
		e := x ^ (lo * 0xE2)
		m |= (e - lo) &^ e
	}
	return m & hi
}

var errBadJSONString = errors.New("malformed JSON string")

// DecodeJSONString reverses appendJSONString (and accepts any valid JSON
// string): raw bytes are kept as they are, escapes are decoded. Clients of
// /files/read and /files/stream use it for the data field, whose bytes are
// the file's own and need not be UTF-8 (encoding/json would turn those into
// U+FFFD and break offset arithmetic).
func DecodeJSONString(q []byte) ([]byte, error) {
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return nil, errBadJSONString
	}
	s := q[1 : len(q)-1]
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			if c == '"' {
				return nil, errBadJSONString
			}
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(s) {
			return nil, errBadJSONString
		}
		switch e := s[i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'u':
			r, ok := hex4(s, i+2)
			if !ok {
				return nil, errBadJSONString
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(s, i+2); ok && i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						out = utf8.AppendRune(out, d)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return nil, errBadJSONString
		}
		i += 2
	}
	return out, nil
}

func hex4(s []byte, at int) (rune, bool) {
	if at+4 > len(s) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s[at:at+4]), 16, 16)
	if err != nil {
		return 0, false
	}
	return rune(v), true
}
