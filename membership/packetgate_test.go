package membership

import (
	"bytes"
	"compress/lzw"
	"encoding/binary"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// lzwBomb is a compressed message (type byte and body) that unpacks to n
// zero bytes: about 32 KB for memberlist's 40 MiB limit.
func lzwBomb(t *testing.T, n int) []byte {
	t.Helper()
	var z bytes.Buffer
	w := lzw.NewWriter(&z, lzw.LSB, gossipLZWLitLen)
	w.Write(make([]byte, n))
	w.Close()
	return forgedStream(t, gossipCompress, &compressed{Algo: 0, Buf: z.Bytes()})
}

func packed(t *testing.T, msg []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	w := lzw.NewWriter(&z, lzw.LSB, gossipLZWLitLen)
	w.Write(msg)
	w.Close()
	return forgedStream(t, gossipCompress, &compressed{Algo: 0, Buf: z.Bytes()})
}

func compound(parts ...[]byte) []byte {
	b := []byte{gossipCompound, byte(len(parts))}
	for _, p := range parts {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
	}
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// TestGossipPacketChecks: packets whose compressed parts unpack to more
// than the gate allows, alone, as parts of a compound, behind a label or
// a checksum, or nested too deep, are refused; what memberlist sends
// passes.
func TestGossipPacketChecks(t *testing.T) {
	bomb := lzwBomb(t, 40<<20)
	half := lzwBomb(t, maxGossipPacketPlainBytes/2+1)
	ping := forgedStream(t, 0, &struct{ SeqNo uint32 }{1})
	nested := ping
	for range maxGossipPacketDepth + 1 {
		nested = packed(t, nested)
	}
	for name, p := range map[string][]byte{
		"bomb":            bomb,
		"labelled bomb":   append([]byte{gossipHasLabel, 7, 'p', 'i', 'n', 'g', 'o', 'r', 'a'}, bomb...),
		"checksum":        append([]byte{gossipHasCRC, 0, 0, 0, 0}, bomb...),
		"compound":        compound(ping, bomb),
		"two halves":      compound(half, half),
		"packed compound": packed(t, compound(ping, half, half)),
		"nested":          nested,
	} {
		if err := checkPacket(p); err == nil {
			t.Errorf("%s: passed", name)
		}
	}
	userMsg := append([]byte{8}, make([]byte, 64<<10)...)
	for name, p := range map[string][]byte{
		"ping":              ping,
		"compressed gossip": packed(t, compound(ping, ping, ping)),
		"64 KiB user msg":   packed(t, userMsg),
		"corrupt":           {gossipCompress, 0xc1},
		"empty":             {},
		"truncated label":   {gossipHasLabel, 9, 'x'},
	} {
		if err := checkPacket(p); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestGossipPacketBombDropped: a node without a gossip key drops UDP
// packets that unpack to 40 MiB before memberlist unpacks them, logs why,
// and still answers a ping sent after them. Before the gate, each cost
// the node 40 MiB of allocations and about 50 ms of CPU on the goroutine
// that answers probes: 40 a second got it declared failed by its peers.
func TestGossipPacketBombDropped(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a", Label: "pingora"})
	c, err := net.Dial("udp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	label := []byte{gossipHasLabel, 7, 'p', 'i', 'n', 'g', 'o', 'r', 'a'}
	bomb := append(append([]byte(nil), label...), lzwBomb(t, 40<<20)...)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := c.Write(bomb); err != nil {
			t.Fatal(err)
		}
	}
	// Packets are handled in order by one goroutine: once the ping sent
	// after the bombs is answered, the bombs have been dealt with.
	var ping bytes.Buffer
	ping.Write(label)
	ping.WriteByte(0) // pingMsg
	codec.NewEncoder(&ping, &codec.MsgpackHandle{}).Encode(&struct {
		SeqNo uint32
		Node  string
	}{SeqNo: 7, Node: "a"})
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 2048)
	for answered := false; !answered; {
		if time.Now().After(deadline) {
			t.Fatal("no ack for the ping sent after the bombs")
		}
		c.Write(ping.Bytes())
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err := c.Read(buf) // only an ack answers a ping
		answered = err == nil
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 100<<20 {
		t.Errorf("%d bytes allocated for 10 packets of %d bytes", alloc, len(bomb))
	}
	if !sink.contains("gossip packet dropped: compressed parts unpack to over") {
		t.Error("the drop was not logged")
	}
}
