package tinyufo_test

import (
	"fmt"

	"github.com/pingora-go/pingora-go/tinyufo"
)

func Example() {
	type object struct{ body []byte }
	c, err := tinyufo.New[*object](tinyufo.Config{Capacity: 1 << 20}) // 1 MiB of bodies
	if err != nil {
		panic(err)
	}
	body := []byte("hello")
	c.PutWith("GET https://example.com/a", &object{body}, int64(len(body)),
		tinyufo.PutOptions{Tags: []string{"product-7"}})
	if o, ok := c.Get("GET https://example.com/a"); ok {
		fmt.Printf("hit: %s\n", o.body)
	}
	fmt.Println("purged by tag:", c.RemoveTag("product-7"))
	_, ok := c.Get("GET https://example.com/a")
	fmt.Println("after purge:", ok)
	st := c.Stats()
	fmt.Println("hits", st.Hits, "misses", st.Misses, "bytes", st.Weight)
	// Output:
	// hit: hello
	// purged by tag: 1
	// after purge: false
	// hits 1 misses 1 bytes 0
}
