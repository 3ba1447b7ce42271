// Package route matches a request's host and path to a routing rule: the
// proxy's routing table.
//
// A Table is immutable once built; the proxy publishes a new one with an
// atomic swap and requests in flight keep the one they loaded. Hosts match
// as nginx's server_name does: an exact name first, then the longest
// wildcard "*.example.com", then the catch-all "*". Within the chosen host,
// the longest path prefix wins. Paths are matched after dot-segment removal
// and slash merging, so "/public/../admin" matches rules for "/admin".
//
// It imports nothing outside the standard library. See ExampleTable.
package route
