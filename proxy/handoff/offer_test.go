package handoff

import (
	"net"
	"os"
	"testing"
	"time"
)

// oldSide runs the running process's half of one hand-off on o in a
// goroutine: it passes one TCP listener named after gen and waits until
// the successor serves. The channel yields the outcome.
func oldSide(t *testing.T, o *Offer, gen string) <-chan error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			tk, err := o.Accept()
			if err != nil {
				return err
			}
			defer tk.Close()
			f, err := FileOf(ln)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := tk.Send([]Listener{{Entry: Entry{Name: gen, Addr: "127.0.0.1:0"}, File: f}}); err != nil {
				return err
			}
			if err := tk.AwaitRelease(10 * time.Second); err != nil {
				return err
			}
			if err := tk.Released(); err != nil {
				return err
			}
			return tk.AwaitServing(10 * time.Second)
		}()
	}()
	return done
}

// takeOver is the successor's half: it receives the listeners, checks the
// one named from, takes the hand-off socket if it is offered at path, and
// reports serving.
func takeOver(t *testing.T, path, from string) *Offer {
	t.Helper()
	in, err := Request(path, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if es := in.Entries(); len(es) != 1 || es[0].Name != from {
		t.Fatalf("entries %+v, want only %q (the hand-off socket is not listed)", es, from)
	}
	ln, ok, err := in.Take(from, "127.0.0.1:0")
	if err != nil || !ok {
		t.Fatalf("take %s: %v %v", from, ok, err)
	}
	ln.Close()
	o, ok, err := in.TakeOffer(path)
	if err != nil || !ok {
		t.Fatalf("take the hand-off socket: %v %v", ok, err)
	}
	if err := in.Release(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := in.Serving(); err != nil {
		t.Fatal(err)
	}
	return o
}

func sameFile(t *testing.T, path string, want os.FileInfo) bool {
	t.Helper()
	fi, err := os.Stat(path)
	return err == nil && os.SameFile(fi, want)
}

// TestOfferChainKeepsOneSocket: ten generations hand the same socket on,
// each taking over before the one before it closed (as when several
// generations drain at once). The socket file is the one the first
// generation bound throughout; closing old generations, in any order,
// leaves it; closing the last one removes it.
func TestOfferChainKeepsOneSocket(t *testing.T) {
	path := sockPath(t)
	first, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	bound := first.file
	gens := []*Offer{first}
	names := []string{"g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9", "g10"}
	for i := 1; i < len(names); i++ {
		done := oldSide(t, gens[i-1], names[i-1])
		gens = append(gens, takeOver(t, path, names[i-1]))
		if err := <-done; err != nil {
			t.Fatalf("hand-off %d: %v", i, err)
		}
		if i%2 == 0 { // close every other old generation now, the rest at the end
			gens[i-2].Close()
		}
		if !sameFile(t, path, bound) {
			t.Fatalf("after hand-off %d the socket file is not the one first bound", i)
		}
	}
	last := gens[len(gens)-1]
	for _, o := range gens[:len(gens)-1] {
		o.Close()
		if !sameFile(t, path, bound) {
			t.Fatal("an old generation's Close removed the socket its successors serve")
		}
	}
	last.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the last owner left its socket file: %v", err)
	}
}

// TestSuccessorQueuedDuringHandoff: a second successor that connects while
// the first is taking over waits in the socket's queue and is served by
// the first once it offers the socket.
func TestSuccessorQueuedDuringHandoff(t *testing.T) {
	path := sockPath(t)
	g0, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g0.Close()
	done := oldSide(t, g0, "g0")
	in, err := Request(path, 10*time.Second) // g1, mid hand-off
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan *Inherited, 1)
	go func() {
		in2, err := Request(path, 10*time.Second) // g2: queued
		if err != nil {
			t.Error(err)
		}
		second <- in2
	}()
	g1, ok, err := in.TakeOffer(path)
	if err != nil || !ok {
		t.Fatalf("take: %v %v", ok, err)
	}
	defer g1.Close()
	if err := in.Release(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := in.Serving(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done = oldSide(t, g1, "g1")
	in2 := <-second
	if in2 == nil {
		t.FailNow()
	}
	if es := in2.Entries(); len(es) != 1 || es[0].Name != "g1" {
		t.Fatalf("queued successor got %+v, want g1's listeners", es)
	}
	in2.Fail(nil)
	if err := <-done; err == nil {
		t.Fatal("g1 saw a failed hand-off succeed")
	}
}

// The successors of TestOfferOwnership: each acts on the socket passed at
// path and returns what it bound or took, to close at the end (or nil).

func keepOffer(t *testing.T, in *Inherited, path string) *Offer {
	o, ok, err := in.TakeOffer(path)
	if err != nil || !ok {
		t.Fatalf("take: %v %v", ok, err)
	}
	in.Release(10 * time.Second)
	in.Serving()
	return o
}

func moveOffer(t *testing.T, in *Inherited, path string) *Offer {
	if _, ok, _ := in.TakeOffer(path + "-moved"); ok {
		t.Fatal("took a socket bound at another path")
	}
	in.Release(10 * time.Second)
	in.Serving()
	o, err := Listen(path + "-moved")
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// replaceOffer is a successor of an earlier version: its "serving" has no
// offer field, and it replaces the socket file with its own.
func replaceOffer(t *testing.T, in *Inherited, path string) *Offer {
	in.Release(10 * time.Second)
	in.done = true
	in.closeUntaken()
	in.c.send(message{Type: "serving"}, nil, 5*time.Second)
	in.c.c.Close()
	os.Remove(path)
	o, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func takeThenFail(t *testing.T, in *Inherited, path string) *Offer {
	o, ok, err := in.TakeOffer(path)
	if err != nil || !ok {
		t.Fatalf("take: %v %v", ok, err)
	}
	in.Fail(nil)
	o.Close() // not its file yet: left alone
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("a failed successor removed the socket file: %v", err)
	}
	return nil
}

// TestOfferOwnership: what the successor does with the passed socket
// decides whether the old process's Close removes the file.
func TestOfferOwnership(t *testing.T) {
	for _, tc := range []struct {
		name        string
		successor   func(t *testing.T, in *Inherited, path string) *Offer
		served      bool // the old process sees a successful hand-off
		oldRemoves  bool // the old process's Close removes the file
		fileChanges bool // the file at path is another one afterwards
	}{
		{"kept: same path", keepOffer, true, false, false},
		{"left: the successor's config names another path", moveOffer, true, true, false},
		{"earlier version: replaces the file", replaceOffer, true, false, true},
		{"took it, then failed", takeThenFail, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := sockPath(t)
			old, err := Listen(path)
			if err != nil {
				t.Fatal(err)
			}
			done := oldSide(t, old, "g0")
			in, err := Request(path, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			mine := tc.successor(t, in, path)
			if err := <-done; (err == nil) != tc.served {
				t.Fatalf("hand-off: %v, want success %v", err, tc.served)
			}
			old.Close()
			fi, err := os.Stat(path)
			switch {
			case tc.oldRemoves && !os.IsNotExist(err):
				t.Fatalf("old process left its socket file: %v", err)
			case !tc.oldRemoves && err != nil:
				t.Fatalf("old process removed the socket file: %v", err)
			case !tc.oldRemoves && os.SameFile(fi, old.file) == tc.fileChanges:
				t.Fatalf("socket file replaced: %v, want %v", !os.SameFile(fi, old.file), tc.fileChanges)
			}
			if mine != nil {
				mine.Close()
			}
		})
	}
}
