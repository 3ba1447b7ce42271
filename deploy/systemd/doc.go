// Package systemd holds no code: pingora-node.service runs a node under
// systemd (see README.md here), and unit_test.go checks what the unit must
// keep for the graceful upgrade: systemd follows the successor's MAINPID,
// reload signals the main process only, and stop waits for the drain.
package systemd
