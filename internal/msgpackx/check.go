// Package msgpackx decodes msgpack from other nodes safely: msgpack
// (vmihailenco/msgpack) trusts a declared length and allocates for it
// before it finds the input short, and keeps a grown buffer in its pooled
// decoder, so a few bytes claiming gigabytes made a node allocate them.
// Every decode of bytes that came over the network goes through Unmarshal.
package msgpackx

import (
	"encoding/binary"
	"errors"

	"github.com/vmihailenco/msgpack/v5"
)

// ErrLength is returned for msgpack that declares more than it holds.
var ErrLength = errors.New("msgpack length beyond the input")

// Unmarshal is msgpack.Unmarshal after CheckLengths: a value declaring a
// string, binary, extension, array or map longer than the input is refused
// before anything is allocated for it.
func Unmarshal(b []byte, v any) error {
	if err := CheckLengths(b); err != nil {
		return err
	}
	return msgpack.Unmarshal(b, v)
}

// CheckLengths walks the msgpack values in b and refuses a declared length
// that cannot fit in the bytes left: a string, binary or extension longer
// than them, or an array or map of more elements than bytes (each takes one
// at least). msgpack trusts such a length and allocates for it before it
// finds the input short: 12 bytes made it allocate 16 MB (membership's
// FuzzDecodeMeta), and 40-byte cluster calls claiming 4 GiB strings grew a
// node to 5.8 GB.
// Each step consumes a byte, so the walk takes at most len(b) steps.
func CheckLengths(b []byte) error {
	for pending := 1; pending > 0 && len(b) > 0; pending-- {
		n, elems, rest, err := msgpackSize(b[0], b[1:])
		if err != nil {
			return err
		}
		if elems {
			pending += n
			b = rest
		} else {
			b = rest[n:]
		}
	}
	return nil // what is short or invalid otherwise, msgpack refuses
}

// msgpackSize reads the header of the value with format byte c from b and
// returns how many elements (elems set: array items, or map keys and
// values) or bytes follow it, and the input after the header. A count
// beyond the input is ErrLength.
func msgpackSize(c byte, b []byte) (n int, elems bool, rest []byte, err error) {
	switch {
	case c <= 0x7f || c >= 0xe0: // fixint
		return 0, false, b, nil
	case c <= 0x8f: // fixmap
		return fits(uint64(c&0x0f)*2, true, b)
	case c <= 0x9f: // fixarray
		return fits(uint64(c&0x0f), true, b)
	case c <= 0xbf: // fixstr
		return fits(uint64(c&0x1f), false, b)
	}
	switch c {
	case 0xcc, 0xd0: // uint8, int8
		return fits(1, false, b)
	case 0xcd, 0xd1:
		return fits(2, false, b)
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		return fits(4, false, b)
	case 0xcb, 0xcf, 0xd3:
		return fits(8, false, b)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1-16: a type byte, then data
		return fits(1+1<<(c-0xd4), false, b)
	}
	var size int        // bytes of the length field
	mult, extra := 1, 0 // elements per count (maps: 2); bytes after the length (ext: type)
	elems = c >= 0xdc
	switch c {
	case 0xc4, 0xd9: // bin8, str8
		size = 1
	case 0xc5, 0xda:
		size = 2
	case 0xc6, 0xdb:
		size = 4
	case 0xc7, 0xc8, 0xc9: // ext8, ext16, ext32
		size, extra = 1<<(c-0xc7), 1
	case 0xdc, 0xdd: // array16, array32
		size = 2 << (c - 0xdc)
	case 0xde, 0xdf: // map16, map32
		size, mult = 2<<(c-0xde), 2
	default: // nil, false, true; 0xc1 is never used and msgpack refuses it
		return 0, false, b, nil
	}
	if len(b) < size {
		return 0, false, nil, ErrLength
	}
	var v uint64
	switch size {
	case 1:
		v = uint64(b[0])
	case 2:
		v = uint64(binary.BigEndian.Uint16(b))
	default:
		v = uint64(binary.BigEndian.Uint32(b))
	}
	return fits(v*uint64(mult)+uint64(extra), elems, b[size:])
}

// fits returns n and b when n elements or bytes can fit in b.
func fits(n uint64, elems bool, b []byte) (int, bool, []byte, error) {
	if n > uint64(len(b)) {
		return 0, false, nil, ErrLength
	}
	return int(n), elems, b, nil
}
