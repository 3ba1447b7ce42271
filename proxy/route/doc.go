// Package route matches a request's host and path to a routing rule: the
// proxy's routing table.
//
// A Table is immutable once built; the proxy publishes a new one with an
// atomic swap and requests in flight keep the one they loaded. Hosts match
// as nginx's server_name does: an exact name first, then the longest
// wildcard "*.example.com", then the catch-all "*". Within the chosen host,
// the longest path prefix wins. Paths are matched after CleanPath: escaped
// unreserved characters decoded, dot segments removed and slashes merged,
// so "/public/../admin" and "/%61dmin" match rules for "/admin".
//
// It imports nothing outside the standard library. See ExampleTable.
package route
