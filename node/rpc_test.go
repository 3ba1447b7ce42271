package node

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/wire"
)

// TestRaftSideOfTheClusterPort: raft's listener on a shared port takes
// connections that open with wire.ProtoRaft (the byte removed) and those
// from a peer that dials raft plainly, opening with one of raft's message
// types (the byte kept).
func TestRaftSideOfTheClusterPort(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux, err := wire.NewMux(tcp, wire.MuxConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { mux.Serve(); close(served) }()
	defer func() { mux.Close(); <-served }()
	ml, err := mux.Listen(wire.ProtoRaft, consensus.FirstBytes()...)
	if err != nil {
		t.Fatal(err)
	}
	raftLn := protoByteListener{ml}
	for _, tc := range []struct {
		name      string
		sent, got []byte
	}{
		{"protocol byte", []byte{wire.ProtoRaft, 1, 'v'}, []byte{1, 'v'}},
		{"plain raft", []byte{0, 'a', 'e'}, []byte{0, 'a', 'e'}},
		{"plain raft, pre-vote", []byte{4, 'p'}, []byte{4, 'p'}},
	} {
		c, err := net.Dial("tcp", tcp.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(tc.sent)
		sc, err := raftLn.Accept()
		if err != nil {
			t.Fatal(err)
		}
		sc.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len(tc.got))
		if _, err := io.ReadFull(sc, got); err != nil || !bytes.Equal(got, tc.got) {
			t.Errorf("%s: raft read %v, %v; want %v", tc.name, got, err, tc.got)
		}
		sc.Close()
		c.Close()
	}
}
