package handoff

import (
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestCacheConnPassed: Send passes one end of a stream socket pair that
// Entries and Take never show as a listener; what the old process writes
// on its end (CacheConn) the successor reads on its own, also after the
// hand-off conversation closed; a second CacheConn gets nothing.
func TestCacheConnPassed(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "h.sock")
	o, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sent := make(chan error, 1)
	go func() {
		sent <- func() error {
			tk, err := o.Accept()
			if err != nil {
				return err
			}
			f, err := FileOf(ln)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := tk.Send([]Listener{{Entry: Entry{Name: "a", Addr: "127.0.0.1:0"}, File: f}}); err != nil {
				return err
			}
			cc := tk.CacheConn()
			tk.Close() // the stream outlives the conversation
			if tk.CacheConn() != nil {
				t.Error("a second CacheConn")
			}
			defer cc.Close()
			_, err = io.WriteString(cc, "cache bytes")
			return err
		}()
	}()
	in, err := Request(path, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if es := in.Entries(); len(es) != 1 || es[0].Name != "a" {
		t.Fatalf("entries %+v, want only a", es)
	}
	if _, ok, _ := in.Take(cacheEntryName, ""); ok {
		t.Fatal("the cache stream was taken as a listener")
	}
	cc := in.CacheConn()
	if cc == nil {
		t.Fatal("no cache stream")
	}
	defer cc.Close()
	if in.CacheConn() != nil {
		t.Fatal("a second CacheConn")
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	cc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(cc)
	if err != nil || string(b) != "cache bytes" {
		t.Fatalf("read %q %v", b, err)
	}
	in.Fail(nil)
}

// TestCacheConnClosedWithTakeover: a cache stream the old process did not
// take is closed with the conversation: the successor reads its end.
func TestCacheConnClosedWithTakeover(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "h.sock")
	o, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	go func() {
		tk, err := o.Accept()
		if err != nil {
			return
		}
		tk.Send(nil)
		tk.Close()
	}()
	in, err := Request(path, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Fail(nil)
	cc := in.CacheConn()
	if cc == nil {
		t.Fatal("no cache stream")
	}
	defer cc.Close()
	cc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(cc); err != nil || len(b) != 0 {
		t.Fatalf("read %q %v, want EOF", b, err)
	}
}

// TestCacheConnFromOlderProcess: an old process that predates the cache
// stream passes no such entry: CacheConn is nil, the hand-off goes on.
func TestCacheConnFromOlderProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "h.sock")
	o, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	go func() {
		tk, err := o.Accept()
		if err != nil {
			return
		}
		defer tk.Close()
		// What Send wrote before the cache stream: the listeners alone.
		tk.c.send(message{Type: "listeners", Version: protocolVersion}, nil, 5*time.Second)
	}()
	in, err := Request(path, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Fail(nil)
	if cc := in.CacheConn(); cc != nil {
		t.Fatal("a cache stream from a process that passed none")
	}
}
