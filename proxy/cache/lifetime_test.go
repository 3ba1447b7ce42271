package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
)

// relayed fills key past its limit (1 byte) with more than relayWindow
// beyond offset 0, and commits: the body streamed through, and only its
// tail is still held.
func relayed(t *testing.T, m *Memory, key string, closeFirst bool) (Object, Reader, int64) {
	t.Helper()
	f, o, r := startedFill(t, m, key, 1)
	if closeFirst {
		r.Close()
	}
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	var n int64
	for range relayWindow/len(chunk) + 2 {
		f.Write(chunk)
		n += int64(len(chunk))
	}
	if err := f.Commit(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Commit of a relayed body: %v, want ErrTooLarge", err)
	}
	return o, r, n
}

// TestRelayedCutReaderBlocksFail: a reader cut off by a relay
// (ErrSlowReader) whose object then ended whole gets that error from
// Blocks, not an empty list. Blocks is taken when Len() >= 0, and the
// engine and the cluster tier sent the list they got as the whole body:
// the client got a chunked or close-delimited response with nothing (or
// less than the body) in it, as complete.
func TestRelayedCutReaderBlocksFail(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	o, r, n := relayed(t, m, "k", false)
	if o.Len() != n {
		t.Fatalf("Len = %d, want %d", o.Len(), n)
	}
	got, err := r.(BlockReader).Blocks(nil, -1)
	if !errors.Is(err, ErrSlowReader) {
		t.Fatalf("Blocks of a cut reader: %d blocks, err %v; want ErrSlowReader", len(got), err)
	}
}

// TestRelayedObjectNewReaderBehind: a reader opened on a relayed object
// that ended whole, at an offset whose bytes were freed (a collapsed
// request that got the object before the fill went over its limit and
// opens its reader after the fill ended), gets ErrSlowReader. It was
// given a cursor before the held bytes, and its first Read or Blocks
// indexed a freed block (a panic).
func TestRelayedObjectNewReaderBehind(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	o, _, _ := relayed(t, m, "k", true)
	err := func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		r, err := o.NewReader(context.Background(), 0)
		if err != nil {
			return err
		}
		_, err = io.ReadAll(r)
		return err
	}()
	if !errors.Is(err, ErrSlowReader) {
		t.Fatalf("a reader from offset 0 of a relayed object: %v, want ErrSlowReader", err)
	}
}

// keyBody is key k's body of n bytes: its name, repeated.
func keyBody(k string, n int) []byte {
	unit := []byte("<" + k + ">")
	return bytes.Repeat(unit, n/len(unit)+1)[:n]
}

// TestHitsRaceEvictions: fills, refreshes and removals of many keys under
// a memory cap that holds only a few of them, while readers read what
// Lookup gives them, by Read and by Blocks: every body read whole is its
// own key's, and every head names its key. An evicted or replaced object
// must stay whole for the readers that hold it.
func TestHitsRaceEvictions(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{MaxBytes: 64 << 10, MaxObjectBytes: 32 << 10})
	const keys = 24
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for w := range 4 { // fillers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				k := fmt.Sprint("k", (i*7+w)%keys)
				f, _, _ := m.Lock(context.Background(), k, 0)
				if f == nil {
					continue // another filler has it
				}
				meta := testMeta("")
				meta.Header.Set("X-Key", k)
				switch i % 7 {
				case 3:
					f.Refresh(meta)
					continue
				case 5:
					m.Remove(context.Background(), k)
				}
				if err := f.Start(meta, 0); err != nil {
					f.Abort(err)
					continue
				}
				body := keyBody(k, 1000+(i*997)%9000)
				for p := body; len(p) > 0; {
					n := min(len(p), 1500)
					f.Write(p[:n])
					p = p[n:]
				}
				if i%11 == 0 {
					f.Abort(nil)
				} else {
					f.Commit()
				}
			}
		}()
	}
	for r := range 4 { // readers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1500 {
				k := fmt.Sprint("k", (i+r)%keys)
				o, _ := m.Lookup(context.Background(), k)
				if o == nil {
					continue
				}
				if got := o.Meta().Header.Get("X-Key"); got != k {
					report(fmt.Errorf("lookup of %s got the head of %s", k, got))
					return
				}
				rd, err := o.NewReader(context.Background(), 0)
				if err != nil {
					continue
				}
				var got []byte
				if br, ok := rd.(BlockReader); ok && o.Len() >= 0 && i%2 == 0 {
					bs, err := br.Blocks(nil, -1)
					if err != nil {
						rd.Close()
						continue
					}
					got = bytes.Join(bs, nil)
				} else if got, err = io.ReadAll(rd); err != nil {
					rd.Close()
					continue // an aborted fill: an error, never a short body
				}
				rd.Close()
				if want := keyBody(k, len(got)); !bytes.Equal(got, want) || (o.Len() >= 0 && int64(len(got)) != o.Len()) {
					report(fmt.Errorf("%s: read %d bytes (Len %d), not its own body", k, len(got), o.Len()))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := m.Stats(); st.Bytes > 64<<10 || st.Evictions == 0 {
		t.Fatalf("stats %+v: want evictions, and no more than the cap held", st)
	}
}
