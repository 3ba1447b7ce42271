package ketama_test

import (
	"fmt"

	"github.com/pingora-go/pingora-go/ketama"
)

func Example() {
	servers := []ketama.Bucket{
		{Addr: "127.0.0.1:7777", Weight: 1},
		{Addr: "127.0.0.1:7778", Weight: 1},
	}
	ring := ketama.New(servers)
	for _, key := range []string{"/some/path", "/some/longer/path", "/g"} {
		i, _ := ring.NodeString(key)
		fmt.Println(key, "->", servers[i].Addr)
	}
	// Output:
	// /some/path -> 127.0.0.1:7778
	// /some/longer/path -> 127.0.0.1:7777
	// /g -> 127.0.0.1:7777
}

func ExampleContinuum_Distinct() {
	servers := []ketama.Bucket{
		{Addr: "127.0.0.1:7777", Weight: 1},
		{Addr: "127.0.0.1:7778", Weight: 1},
		{Addr: "127.0.0.1:7779", Weight: 1},
	}
	ring := ketama.New(servers)
	var buf [2]int // primary and one replica, no allocation
	for _, i := range ring.Distinct([]byte("doghash"), buf[:]) {
		fmt.Println(servers[i].Addr)
	}
	// Output:
	// 127.0.0.1:7778
	// 127.0.0.1:7779
}
