package handoff_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/pingora-go/pingora-go/proxy/handoff"
)

// Example_handoff shows both sides in one process; in real use the
// successor is a new process started with "pingora-node run --upgrade".
func Example_handoff() {
	dir, _ := os.MkdirTemp("", "handoff")
	defer os.RemoveAll(dir)
	offer, _ := handoff.Listen(filepath.Join(dir, "upgrade.sock"))
	defer offer.Close()

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() { // the running process
		tk, _ := offer.Accept()
		defer tk.Close()
		f, _ := handoff.FileOf(ln)
		defer f.Close()
		tk.Send([]handoff.Listener{{Entry: handoff.Entry{Name: "http", Addr: "127.0.0.1:0"}, File: f}})
		tk.AwaitRelease(time.Minute)
		tk.Released()
		tk.AwaitServing(time.Minute)
	}()

	// The successor.
	in, err := handoff.Request(offer.Path(), time.Minute)
	if err != nil {
		fmt.Println(err)
		return
	}
	got, ok, _ := in.Take("http", "127.0.0.1:0")
	defer got.Close()
	// The same hand-off socket serves this process's own successor.
	next, kept, _ := in.TakeOffer(offer.Path())
	defer next.Close()
	in.Release(time.Minute)
	in.Serving()
	fmt.Println(ok, got.Addr().String() == ln.Addr().String(), kept)
	// Output: true true true
}
