// Package ketama builds the consistent-hash ring that nginx uses for
// "hash $key consistent" (the same ring as Cloudflare's pingora-ketama), so
// that a Go proxy sends every key to the same upstream server nginx would.
//
// It imports nothing from the module and only the standard library. Lookups,
// ring walks and Distinct never allocate. See Example for the basic use and
// ExampleContinuum_Distinct for picking replicas.
//
// # Ring construction
//
// For each server, in the order given to New, the base string is
// host + "\x00" + port. Each server gets 160*weight points; the first point's
// hash is crc32(base || le32(0)) and every further point hashes
// crc32(base || le32(previous point hash)) (IEEE CRC-32). The points are
// sorted by hash and an exact duplicate hash keeps only the point generated
// first. A key belongs to the first point whose hash is >= crc32(key),
// wrapping around to the first point of the ring.
//
// # Host and port
//
// Addr is split exactly as nginx splits the server name as written in its
// configuration: an address starting with "unix:" (any case) has host equal
// to the rest and an empty port; otherwise host is the text before the last
// ':' and port the text after it; an address with no ':' has an empty port.
//
// For bracketed IPv6 this package follows nginx and keeps the brackets:
// "[::1]:80" hashes host "[::1]" and port "80". pingora-ketama formats a
// SocketAddr without brackets ("::1" and "80"), so the two disagree on IPv6
// servers. To reproduce pingora-ketama, pass the address unbracketed and in
// Rust's canonical form ("::1:80"); the last-colon split then yields host
// "::1" and port "80".
package ketama
