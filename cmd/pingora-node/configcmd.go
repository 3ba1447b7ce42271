package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pingora-go/pingora-go/node"
)

const configUsage = `usage:
  pingora-node config get [--admin URL] [--consistent] [--json]
  pingora-node config apply -f FILE [--if-match VERSION] [--admin URL] [--token T]
  pingora-node config history [--admin URL]
  pingora-node config rollback VERSION [--admin URL] [--token T]
`

// cmdConfig reads and writes the replicated cluster config through a
// node's admin API; any node forwards writes to the raft leader.
func cmdConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, configUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("config "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", os.Getenv("PINGORA_ADMIN"), "admin `URL` of any node [PINGORA_ADMIN] (default http://127.0.0.1:9090)")
	token := fs.String("token", os.Getenv("PINGORA_ADMIN_TOKEN"), "admin token [PINGORA_ADMIN_TOKEN]")
	file := fs.String("f", "", "cluster config `file` (YAML or JSON) to apply")
	ifMatch := fs.String("if-match", "", "apply only if the current version is `VERSION`")
	consistent := fs.Bool("consistent", false, "read through the leader (linearizable)")
	asJSON := fs.Bool("json", false, "print the JSON document")
	rest := args[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		rest = append(rest[1:], rest[0]) // "rollback 3 --admin X": flags may follow the version
	}
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	c := &adminClient{base: adminURL(*admin), token: *token}
	switch sub {
	case "get":
		path := "/v1/config"
		if *consistent {
			path += "?consistent=true"
		}
		var doc node.ConfigDoc
		raw, err := c.do("GET", path, nil, "", &doc)
		if err != nil {
			fmt.Fprintln(stderr, "pingora-node config get:", err)
			return 1
		}
		if *asJSON {
			stdout.Write(raw)
			return 0
		}
		fmt.Fprintf(stderr, "# version %d %s written %s by %s\n", doc.Version, doc.Hash, doc.Time.Format(time.RFC3339), doc.Node)
		io.WriteString(stdout, doc.Content)
		return 0
	case "apply":
		if *file == "" {
			fmt.Fprint(stderr, configUsage)
			return 2
		}
		body, err := os.ReadFile(*file)
		if err != nil {
			fmt.Fprintln(stderr, "pingora-node config apply:", err)
			return 1
		}
		return c.apply(body, *ifMatch, stdout, stderr)
	case "history":
		var hist []node.ConfigDoc
		if _, err := c.do("GET", "/v1/config/history", nil, "", &hist); err != nil {
			fmt.Fprintln(stderr, "pingora-node config history:", err)
			return 1
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tHASH\tWRITTEN\tON NODE")
		for _, d := range hist {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", d.Version, d.Hash, d.Time.Format(time.RFC3339), d.Node)
		}
		tw.Flush()
		return 0
	case "rollback":
		if fs.NArg() != 1 {
			fmt.Fprint(stderr, configUsage)
			return 2
		}
		want, err := strconv.ParseInt(fs.Arg(0), 10, 64)
		if err != nil {
			fmt.Fprintln(stderr, "pingora-node config rollback: VERSION must be a number")
			return 2
		}
		var hist []node.ConfigDoc
		if _, err := c.do("GET", "/v1/config/history", nil, "", &hist); err != nil || len(hist) == 0 {
			fmt.Fprintln(stderr, "pingora-node config rollback: reading history:", err)
			return 1
		}
		cur := hist[len(hist)-1].Version
		for _, d := range hist {
			if d.Version == want {
				// Written as a new version, and only over the version just read.
				return c.apply([]byte(d.Content), strconv.FormatInt(cur, 10), stdout, stderr)
			}
		}
		fmt.Fprintf(stderr, "pingora-node config rollback: version %d is not in the kept history\n", want)
		return 1
	}
	fmt.Fprint(stderr, configUsage)
	return 2
}

type adminClient struct{ base, token string }

// do sends a request and decodes a 200 answer into out; other statuses
// become an error carrying the node's message.
func (c *adminClient) do(method, path string, body []byte, ifMatch string, out any) ([]byte, error) {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("node unreachable: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(raw, &e)
		return raw, fmt.Errorf("HTTP %d: %s", resp.StatusCode, e.Error)
	}
	return raw, json.Unmarshal(raw, out)
}

func (c *adminClient) apply(body []byte, ifMatch string, stdout, stderr io.Writer) int {
	var doc node.ConfigDoc
	if _, err := c.do("PUT", "/v1/config", body, ifMatch, &doc); err != nil {
		fmt.Fprintln(stderr, "pingora-node config apply:", err)
		return 1
	}
	fmt.Fprintf(stdout, "applied: version %d %s\n", doc.Version, doc.Hash)
	return 0
}
