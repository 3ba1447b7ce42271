// Module gometricscompat stands in for the package
// github.com/hashicorp/go-metrics/compat, which go-metrics v0.7.0 (required by
// hashicorp/raft v1.8.0 and memberlist v0.7.0) no longer ships but
// raft-boltdb/v2 v2.3.1 still imports. It forwards to go-metrics v0.7.0.
module github.com/hashicorp/go-metrics/compat

go 1.22

require github.com/hashicorp/go-metrics v0.7.0
