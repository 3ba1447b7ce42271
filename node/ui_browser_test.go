package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// findChromium returns the path of a Chromium or Chrome, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser starts a headless Chromium for the test and records what the
// page reports as errors: console.error and console.warn calls, uncaught
// exceptions, and the browser's own error log (failed loads, CSP refusals).
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	path := findChromium()
	if path == "" {
		t.Skip("no chromium on PATH: apt-get install -y chromium (Debian's package) to run the cluster page in a real browser; .ci/run installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 1000), chromedp.Flag("disable-gpu", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	var mu sync.Mutex
	var errs []string
	note := func(s string) { mu.Lock(); errs = append(errs, s); mu.Unlock() }
	if err := chromedp.Listen(bctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				note(fmt.Sprintf("console.%s: %s", e.Type, strings.Join(args, " ")))
			}
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			desc := d.Text
			if d.Exception != nil {
				desc += " " + d.Exception.Description
			}
			note("uncaught: " + desc)
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError || e.Entry.Level == cdplog.EntryLevelWarning {
				note(fmt.Sprintf("log %s: %s %s", e.Entry.Level, e.Entry.Text, e.Entry.URL))
			}
		}
	}); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", path, err)
	}
	return bctx, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), errs...) }
}

// waitPage evaluates the JavaScript condition js until it is true.
func waitPage(t *testing.T, bctx context.Context, what, js string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(bctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			ctx, cancel := context.WithTimeout(bctx, 5*time.Second)
			page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('main').innerText`))
			cancel()
			t.Fatalf("timed out waiting for the page to show %s (last error %v); the page reads:\n%s", what, err, page)
		}
		time.Sleep(50 * time.Millisecond) // sleep-ok: polling the page under a deadline
	}
}

// TestClusterPageInBrowser: the cluster page in headless Chromium against
// three nodes in this process shows every member, raft and upstream
// health; shows a node dead once it stops (crash-like: no leave); shows
// the new config version and its diff after a write; and logs no error.
// With PINGORA_UI_SCREENSHOT=file.png it saves a screenshot (the README's).
func TestClusterPageInBrowser(t *testing.T) {
	bctx, consoleErrors := browser(t)
	a, b := origin(t, "a"), origin(t, "b")
	n1 := startRaftNode(t, "n1", a, 3)
	seed := n1.Members().Addr()
	n2 := startRaftNode(t, "n2", a, 3, seed)
	n3 := startRaftNode(t, "n3", a, 3, seed)
	waitUntil(t, "version 1 on every node", func() bool {
		for _, n := range []*Node{n1, n2, n3} {
			if c := n.Status().Config; c == nil || c.Version != 1 {
				return false
			}
		}
		return true
	})
	for range 20 { // traffic for the charts
		get(t, "http://"+n2.ListenerAddrs()["http"]+"/")
	}
	ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+n1.AdminAddr()+"/ui")); err != nil {
		t.Fatal(err)
	}
	waitPage(t, bctx, "three alive members", `document.querySelectorAll('#members tbody tr[data-state="alive"]').length === 3`)
	waitPage(t, bctx, "raft on every node with one leader", `document.querySelectorAll('#raft tbody tr').length === 3 &&
		document.querySelectorAll('#raft tbody tr.leader').length === 1 && document.getElementById('raft-summary').textContent.startsWith('leader ')`)
	waitPage(t, bctx, "the upstream healthy as three nodes see it", `[...document.querySelectorAll('#upstreams tbody tr[data-peer="`+a+`"] td.healthy')].length === 3`)
	waitPage(t, bctx, "version 1 and its history", `document.getElementById('config-version').textContent === '1' && document.querySelector('#history tr[data-version="1"]') !== null`)
	waitPage(t, bctx, "a traffic card per node with requests on n2", `document.querySelectorAll('#traffic .card').length === 3 &&
		document.querySelector('#traffic .card[data-traffic="n2"] canvas') !== null`)

	victim := n3 // a follower, so the write below needs no new election
	if rs := n3.Status().Raft; rs != nil && rs.State == "Leader" {
		victim = n2
	}
	victim.store.Load().Close() // crash-like: no leadership transfer, no leave
	victim.leaveCluster(false)
	waitPage(t, bctx, victim.cfg.Name+" dead, standing out", `(() => { const r = document.querySelector('#members tr[data-member="`+victim.cfg.Name+`"]');
		return r !== null && r.dataset.state === 'dead' && r.classList.contains('bad'); })()`)

	waitUntil(t, "a config write accepted by the two nodes left", func() bool {
		code, body := putConfig(t, n1.AdminAddr(), clusterFor(b), "")
		if code != 200 {
			t.Logf("config write: %d %s", code, strings.TrimSpace(body))
		}
		return code == 200
	})
	waitPage(t, bctx, "version 2 with its diff", `document.getElementById('config-version').textContent === '2' &&
		document.querySelector('#history tr[data-version="2"]') !== null &&
		[...document.querySelectorAll('#diff .add')].some(e => e.textContent.includes('`+b+`'))`)
	if path := os.Getenv("PINGORA_UI_SCREENSHOT"); path != "" {
		for range 400 { // a few seconds of traffic for the charts (bounded)
			get(t, "http://"+n1.ListenerAddrs()["http"]+"/")
			get(t, "http://"+n2.ListenerAddrs()["http"]+"/")
			time.Sleep(10 * time.Millisecond) // sleep-ok: pacing the screenshot's sample traffic
		}
		screenshot(t, bctx, path)
	}
	if errs := consoleErrors(); len(errs) > 0 {
		t.Fatalf("the page reported errors:\n%s", strings.Join(errs, "\n"))
	}
}

// screenshot saves the whole page as a PNG.
func screenshot(t *testing.T, bctx context.Context, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}
