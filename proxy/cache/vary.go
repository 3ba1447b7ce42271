package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"github.com/pingora-go/pingora-go/internal/cginame"
)

// VaryFields returns the request fields a response varies on (RFC 9111
// §4.1), canonical, sorted and unique; star reports "Vary: *", which never
// matches a later request.
func VaryFields(h http.Header) (fields []string, star bool) {
	for _, line := range h["Vary"] {
		for line != "" {
			var item string
			item, line = nextItem(line)
			item = strings.TrimSpace(item)
			switch item {
			case "":
			case "*":
				star = true
			default:
				fields = append(fields, textproto.CanonicalMIMEHeaderKey(item))
			}
		}
	}
	slices.Sort(fields)
	return slices.Compact(fields), star
}

func varyStar(h http.Header) bool {
	_, star := VaryFields(h)
	return star
}

// IndexMeta is the head of the index entry stored under a key whose
// responses vary on fields.
func IndexMeta(id string, fields []string) *Meta {
	return &Meta{Header: http.Header{}, Variants: &Variants{ID: id, Fields: fields}}
}

// VariantKey returns the key of the variant of primary that a request with
// fields req selects under the index v: the request's lines of v.Fields,
// each as it came and each counted (exactValues), hashed with SHA-256, so
// a header value cannot forge another variant's key. The values of a
// field's other spellings count too (OtherSpellings).
//
// RFC 9111 §4.1 lets a cache combine a field's lines and normalize its
// list syntax before it compares; this one does neither, as the cache
// cannot know how the origin reads a field: "Origin: https://a.example,"
// (or an empty Origin line before "Origin: https://a.example") would
// select the variant of "Origin: https://a.example", while an origin that
// reads the first line as it is (Go's Header.Get, Python's headers.get, a
// CORS allow-list) answers another origin, and its page, without
// Access-Control-Allow-Origin, was stored for every browser of a.example.
// Spelling a list differently ("gzip,br" and "gzip, br") costs a variant
// of its own; clients send their one spelling each time.
func VariantKey(primary string, v *Variants, req http.Header) string {
	h := sha256.New()
	for _, f := range v.Fields {
		h.Write([]byte(f))
		h.Write([]byte{':'})
		exactValues(h, req[f])
		for _, k := range OtherSpellings(req, f) {
			h.Write([]byte("\x00" + k + ":"))
			exactValues(h, req[k])
		}
		h.Write([]byte{'\n'})
	}
	var sum [sha256.Size]byte
	return primary + variantSep + v.ID + "\x00" + hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// exactValues writes a field's lines to h as they came, their count first
// and each line after its length: an absent field, an empty line, two
// lines and one line of the same bytes joined by a comma all write apart.
func exactValues(h hash.Hash, vals []string) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(vals)))])
	for _, line := range vals {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(line)))])
		h.Write([]byte(line))
	}
}

// SameFields reports whether two sorted field lists are equal.
func SameFields(a, b []string) bool { return slices.Equal(a, b) }

// OtherSpellings returns, sorted, the fields of req other than canonical
// name f that CGI-style origins (PHP, WSGI, Rack) read as f, as
// HTTP_X_TENANT: f in another case or with '_' for '-' ("X_Tenant"), which
// a proxy passes on. An origin whose response varies on X-Tenant then
// answers "X_Tenant: evil" as tenant evil; had that request selected the
// variant of no tenant, its page would be stored as that variant.
func OtherSpellings(req http.Header, f string) []string {
	var out []string
	for k := range req {
		if len(k) == len(f) && k != f && cginame.Same(k, f) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
