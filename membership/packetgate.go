package membership

import (
	"bytes"
	"compress/lzw"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"

	"github.com/pingora-go/pingora-go/internal/logthrottle"
)

// Without a gossip key, memberlist unpacks a compressed UDP packet into
// up to 40 MiB (its maxDecompressedBytes), and a compound message's parts
// may each be compressed: a 32 KB packet of LZW-packed zeros cost a node
// 50 ms of CPU and 40 MiB of allocations, on the goroutine that answers
// the other members' probes. 40 such packets a second (1.3 MB/s, from any
// source address: UDP needs no handshake) held a core and got the node
// declared failed by its peers. packetGate unpacks each plain packet
// first, within maxGossipPacketPlainBytes for all its compressed parts,
// and drops one that unpacks to more. With a gossip key, memberlist
// decrypts a packet before anything else and drops what fails, so the
// gate is installed only without one.
const (
	// maxGossipPacketPlainBytes bounds what a packet's compressed parts
	// unpack to, together. What a node sends by UDP is far smaller: a
	// compound of gossip messages fits memberlist's UDP buffer (1400
	// bytes) before compression, and its user messages (metadata sync,
	// force leave) are under 64 KiB.
	maxGossipPacketPlainBytes = 256 << 10
	// maxGossipPacketDepth bounds the nesting of compound and compressed
	// messages in one packet (memberlist nests them two deep).
	maxGossipPacketDepth = 8
	gossipCompound       = 7
	gossipHasCRC         = 12
)

// packetGate screens the packets of the transport it wraps (see above).
type packetGate struct {
	memberlist.NodeAwareTransport
	ch      chan *memberlist.Packet
	stopped chan struct{} // closed when the transport has stopped
	once    sync.Once
	wg      sync.WaitGroup
	log     *slog.Logger
	noise   *logthrottle.Throttle
}

func newPacketGate(t memberlist.NodeAwareTransport, log *slog.Logger, noise *logthrottle.Throttle) *packetGate {
	g := &packetGate{NodeAwareTransport: t, ch: make(chan *memberlist.Packet), stopped: make(chan struct{}), log: log, noise: noise}
	g.wg.Add(1)
	go g.run()
	return g
}

// PacketCh returns the packets that passed the gate.
func (g *packetGate) PacketCh() <-chan *memberlist.Packet { return g.ch }

// GetAutoBindPort returns the bound port, as memberlist.NetTransport's.
func (g *packetGate) GetAutoBindPort() int {
	return g.NodeAwareTransport.(interface{ GetAutoBindPort() int }).GetAutoBindPort()
}

// Shutdown stops the transport, then the gate: the gate keeps taking
// packets until the transport has stopped, as its listener may block on
// handing one over.
func (g *packetGate) Shutdown() error {
	var err error
	g.once.Do(func() {
		err = g.NodeAwareTransport.Shutdown()
		close(g.stopped)
	})
	g.wg.Wait()
	return err
}

func (g *packetGate) run() {
	defer g.wg.Done()
	in := g.NodeAwareTransport.PacketCh()
	for {
		select {
		case p := <-in:
			if err := checkPacket(p.Buf); err != nil {
				msg := "membership: gossip packet dropped: " + err.Error()
				kind := msg
				if i := strings.IndexAny(msg, "0123456789"); i > 0 {
					kind = msg[:i]
				}
				g.noise.Log(g.log, slog.LevelWarn, kind, msg+" from="+p.From.String())
				continue
			}
			select {
			case g.ch <- p:
			case <-g.stopped:
				return
			}
		case <-g.stopped:
			return
		}
	}
}

// checkPacket reads a plain packet as memberlist's ingestPacket and
// handleCommand do (label, checksum, compound parts, compressed parts) and
// refuses one whose compressed parts unpack to more than
// maxGossipPacketPlainBytes together, or that nests deeper than
// maxGossipPacketDepth. What it cannot read passes: memberlist refuses it.
func checkPacket(buf []byte) error {
	if len(buf) > 0 && buf[0] == gossipHasLabel {
		if len(buf) < 2 || len(buf) < 2+int(buf[1]) {
			return nil
		}
		buf = buf[2+int(buf[1]):]
	}
	if len(buf) >= 5 && buf[0] == gossipHasCRC {
		buf = buf[5:]
	}
	budget := maxGossipPacketPlainBytes
	return checkCommand(buf, &budget, 0)
}

func checkCommand(buf []byte, budget *int, depth int) error {
	if len(buf) == 0 || (buf[0] != gossipCompound && buf[0] != gossipCompress) {
		return nil
	}
	if depth >= maxGossipPacketDepth {
		return fmt.Errorf("compound and compressed messages nested over %d deep", maxGossipPacketDepth)
	}
	if buf[0] == gossipCompound {
		for _, part := range compoundParts(buf[1:]) {
			if err := checkCommand(part, budget, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	var c compressed
	if err := codec.NewDecoderBytes(buf[1:], &codec.MsgpackHandle{}).Decode(&c); err != nil || c.Algo != 0 {
		return nil
	}
	plain, err := io.ReadAll(io.LimitReader(lzw.NewReader(bytes.NewReader(c.Buf), lzw.LSB, gossipLZWLitLen), int64(*budget)+1))
	if len(plain) > *budget {
		return fmt.Errorf("compressed parts unpack to over %d bytes", maxGossipPacketPlainBytes)
	}
	if err != nil {
		return nil // corrupt: memberlist refuses it
	}
	*budget -= len(plain)
	return checkCommand(plain, budget, depth+1)
}

// compoundParts splits a compound message's body as memberlist's
// decodeCompoundMessage does (a count, the lengths, the parts; a
// truncated part and those after it are left out).
func compoundParts(buf []byte) [][]byte {
	if len(buf) < 1 {
		return nil
	}
	n := int(buf[0])
	buf = buf[1:]
	if len(buf) < 2*n {
		return nil
	}
	lens, buf := buf[:2*n], buf[2*n:]
	parts := make([][]byte, 0, n)
	for i := range n {
		l := int(binary.BigEndian.Uint16(lens[2*i:]))
		if len(buf) < l {
			break
		}
		parts = append(parts, buf[:l])
		buf = buf[l:]
	}
	return parts
}
