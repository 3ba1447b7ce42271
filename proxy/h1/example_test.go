package h1_test

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/pingora-go/pingora-go/proxy/h1"
)

func ExampleReader_ReadRequest() {
	raw := "POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
	r := h1.NewReader(bufio.NewReader(strings.NewReader(raw)), h1.Limits{})
	var req h1.Request
	if err := r.ReadRequest(&req); err != nil {
		fmt.Println(err)
		return
	}
	body := h1.NewBody(r)
	body.ResetRequest(&req, 1<<20)
	b, _ := io.ReadAll(body)
	fmt.Println(req.Method, req.Host, req.Path, string(b))

	bad := "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
	r = h1.NewReader(bufio.NewReader(strings.NewReader(bad)), h1.Limits{})
	fmt.Println(h1.StatusOf(r.ReadRequest(&req)))
	// Output:
	// POST example.com /upload hello
	// 400
}
