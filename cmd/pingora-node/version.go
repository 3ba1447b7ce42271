package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise it comes from the module build info.
var version = ""

// build is what the binary knows of its own build.
type build struct {
	// Version is -X main.version, else the main module's version: a tag, or
	// the pseudo-version go build makes from the commit ("(devel)" when
	// built without VCS information).
	Version string
	// Commit is the VCS revision (12 hex digits, "+dirty" when the tree had
	// changes), "" when unknown; Time is the commit's time.
	Commit, Time string
}

// readBuild extracts build from the binary's build info.
func readBuild(bi *debug.BuildInfo, ok bool) build {
	b := build{Version: version}
	if !ok {
		if b.Version == "" {
			b.Version = "(devel)"
		}
		return b
	}
	if b.Version == "" {
		b.Version = bi.Main.Version
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(b.Commit) > 12 {
		b.Commit = b.Commit[:12]
	}
	if b.Commit != "" && dirty {
		b.Commit += "+dirty"
	}
	return b
}

func thisBuild() build { return readBuild(debug.ReadBuildInfo()) }

// String is what "pingora-node version" prints.
func (b build) String() string {
	commit := "commit unknown (built without VCS information: go build -buildvcs=false, or outside a git checkout)"
	if b.Commit != "" {
		commit = "commit " + b.Commit
		if b.Time != "" {
			commit += " (" + b.Time + ")"
		}
	}
	return fmt.Sprintf("pingora-node %s\n%s\n%s %s/%s\n", b.Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

var versionCmd = command{name: "version", args: "", about: "Print the version, the commit it was built from and the Go version."}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := versionCmd.newFlags()
	pos, code, done := versionCmd.parse(fs, args, stdout, stderr)
	if done {
		return code
	}
	if len(pos) > 0 {
		return versionCmd.usageError(fs, stderr, "takes no arguments")
	}
	fmt.Fprint(stdout, thisBuild())
	return 0
}
