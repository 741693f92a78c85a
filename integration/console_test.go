package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

const consoleToken = "console-test-token"

// chromiumPath finds Debian's chromium; the test skips without it unless
// SB_REQUIRE_CHROMIUM=1 (CI installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SB_REQUIRE_CHROMIUM") == "1" {
		t.Fatal("chromium not found and SB_REQUIRE_CHROMIUM=1")
	}
	t.Skip("chromium not installed (apt-get install chromium)")
	return ""
}

// browserSession is one headless Chromium; every problem a page reports
// (uncaught exception, console.error, an error log entry) is recorded.
type browserSession struct {
	t        *testing.T
	ctx      context.Context
	shots    string
	tabs     []context.Context // tabs opened besides the first
	mu       sync.Mutex
	problems []string
}

func newBrowser(t *testing.T, downloads string) *browserSession {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:0:0],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 800),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	b := &browserSession{t: t, ctx: ctx, shots: os.Getenv("SB_CONSOLE_SCREENSHOTS")}
	if b.shots == "" {
		b.shots = t.TempDir()
	}
	t.Cleanup(func() {
		for _, tab := range b.tabs {
			_ = chromedp.Cancel(tab) // closes the tab; its goroutine ends
		}
		_ = chromedp.Cancel(ctx)
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Run(ctx, browser.SetDownloadBehavior(browser.SetDownloadBehaviorBehaviorAllow).WithDownloadPath(downloads)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// tab opens a new tab (the first call uses the browser's first tab).
func (b *browserSession) tab(name string, first bool) context.Context {
	ctx := b.ctx
	if !first {
		ctx, _ = chromedp.NewContext(b.ctx) // closed by chromedp.Cancel in the cleanup
		b.tabs = append(b.tabs, ctx)
	}
	chromedp.ListenTarget(ctx, func(ev any) {
		var p string
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			p = "exception: " + e.ExceptionDetails.Error()
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError || e.Type == runtime.APITypeAssert {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value), a.Description)
				}
				p = "console.error: " + strings.Join(parts, " ")
			}
		case *log.EventEntryAdded:
			if e.Entry.Level == log.LevelError {
				p = fmt.Sprintf("log %s: %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL)
			}
		}
		if p != "" {
			b.mu.Lock()
			b.problems = append(b.problems, name+": "+p)
			b.mu.Unlock()
		}
	})
	if err := chromedp.Run(ctx, log.Enable(), runtime.Enable(), chromedp.EmulateViewport(1280, 800)); err != nil {
		b.t.Fatalf("tab %s: %v", name, err)
	}
	return ctx
}

// checkProblems fails the test on anything a page reported.
func (b *browserSession) checkProblems() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("page reported: %s", p)
	}
}

func (b *browserSession) run(ctx context.Context, what string, actions ...chromedp.Action) {
	b.t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Run(tctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// waitJS polls expr in the page until it is true.
func (b *browserSession) waitJS(ctx context.Context, what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := chromedp.Run(tctx, chromedp.Evaluate(expr, &ok))
		cancel()
		if err == nil && ok {
			return
		}
		if err != nil {
			last = err.Error()
		}
		_ = chromedp.Run(ctx, chromedp.Sleep(100*time.Millisecond)) // a poll interval, not a wait for a condition
	}
	var body string
	_ = chromedp.Run(ctx, chromedp.Evaluate(`document.querySelector('main').innerText`, &body))
	b.t.Fatalf("%s: %s not true within 20s (%s); page:\n%s", what, expr, last, body)
}

func (b *browserSession) screenshot(ctx context.Context, name string) {
	b.t.Helper()
	var png []byte
	b.run(ctx, "screenshot "+name, chromedp.CaptureScreenshot(&png))
	path := filepath.Join(b.shots, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	b.t.Logf("screenshot %s", path)
}

// signIn opens the console of base on page and gives it the token.
func (b *browserSession) signIn(ctx context.Context, base string) {
	b.t.Helper()
	b.run(ctx, "open console", chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", consoleToken, chromedp.ByID), chromedp.Click("#login-form button", chromedp.ByQuery))
	b.waitJS(ctx, "signed in", `document.getElementById('login').hidden && document.getElementById('conn').textContent.startsWith('gateway')`)
}

// show switches the console to one of its pages (a same-document
// navigation: the page keeps its connections).
func show(page string) chromedp.Action {
	return chromedp.Evaluate(fmt.Sprintf(`location.hash = %q`, "#"+page), nil)
}

func text(id string) string { return fmt.Sprintf(`document.getElementById(%q).textContent`, id) }

// TestConsoleInBrowser drives the console in headless Chromium against 2
// gateways on one NATS with a relay agent: the cluster and the upstream
// are listed, a file goes through the pipe page from gateway A's console
// to gateway B's with its bytes and name, a Megaphone channel is created,
// written 3 times and tailed, and a middleman SUB/PUB round trip works.
// Any error a page reports fails the test.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts chromium")
	}
	ns := natstest.RunServer(t, nil)
	gws := harness.StartN(t, 2, ns.URL(), func(c *gateway.Config) {
		c.UI.Token = consoleToken
		c.UI.Interval = 500 * time.Millisecond
		c.Middleman.ServiceKeys = []string{"svc-key"}
		c.Log.Level = "info"
	})
	a, bgw := gws[0], gws[1]
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hi") }))
	t.Cleanup(target.Close)
	startAgent(t, agentConfig(t, ns.URL(), map[string]string{"billing-api": target.URL}))

	downloads := t.TempDir()
	br := newBrowser(t, downloads)
	pa := br.tab("A", true)
	pb := br.tab("B", false)

	// Overview on A: both gateways, the agent's upstream.
	br.signIn(pa, a.URL())
	br.waitJS(pa, "both gateways listed", fmt.Sprintf(`(() => { const t = %s; return t.includes(%q) && t.includes(%q); })()`,
		text("cluster"), a.Addr(), bgw.Addr()))
	br.waitJS(pa, "upstream listed", fmt.Sprintf(`%s.includes("billing-api (1)")`, text("relay")))
	br.waitJS(pa, "streams listed", fmt.Sprintf(`%s.includes("SB_MEGAPHONE")`, text("streams")))
	br.waitJS(pa, "charts drawn", `document.querySelectorAll('#charts svg').length === 4`)
	if strings.Contains(pageText(t, br, pa), consoleToken) {
		t.Error("the page shows the token")
	}

	// Pipe: send a file on A's page, receive it on B's page.
	payload := make([]byte, 300<<10)
	_, _ = rand.Read(payload)
	name := "rapport-données 1.bin"
	src := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(src, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	br.signIn(pb, bgw.URL())
	br.run(pb, "receive", show("pipes"), chromedp.WaitVisible("#pr-go", chromedp.ByID),
		chromedp.SetValue("#pr-name", "browser-file", chromedp.ByID), chromedp.Click("#pr-go", chromedp.ByID))
	br.waitJS(pb, "receiver waiting", fmt.Sprintf(`%s.includes("waiting")`, text("pr-status")))
	br.run(pa, "pipes", show("pipes"), chromedp.WaitVisible("#ps-go", chromedp.ByID))
	br.run(pa, "drop a file", chromedp.Evaluate(`(() => {
		const dt = new DataTransfer();
		dt.items.add(new File(['dropped'], 'dropped.txt', { type: 'text/plain' }));
		document.getElementById('ps-drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
	})()`, nil))
	br.waitJS(pa, "file dropped", fmt.Sprintf(`%s.includes("dropped.txt")`, text("ps-file-label")))
	br.run(pa, "send",
		chromedp.SetValue("#ps-name", "browser-file", chromedp.ByID),
		chromedp.SetUploadFiles("#ps-file", []string{src}, chromedp.ByID))
	br.waitJS(pa, "file chosen", fmt.Sprintf(`%s.includes(%q)`, text("ps-file-label"), name))
	br.run(pa, "send", chromedp.Click("#ps-go", chromedp.ByID))
	br.waitJS(pa, "sent", fmt.Sprintf(`%s.startsWith("sent ")`, text("ps-status")))
	br.waitJS(pb, "received", fmt.Sprintf(`%s.startsWith("received ")`, text("pr-status")))
	var download string
	br.run(pb, "link", chromedp.Evaluate(`document.getElementById('pr-link').download`, &download))
	if download != name {
		t.Errorf("download name %q, want %q", download, name)
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		got, err := os.ReadFile(filepath.Join(downloads, name))
		if err != nil {
			entries, _ := os.ReadDir(downloads)
			return fmt.Errorf("%v (downloads: %v)", err, entries)
		}
		if !bytes.Equal(got, payload) {
			return fmt.Errorf("downloaded %d bytes, differ from the %d sent", len(got), len(payload))
		}
		return nil
	})
	br.screenshot(pa, "console-pipes.png")

	// Every form control has a label; the pages are reachable from the
	// keyboard (focus a nav link, press Enter).
	br.waitJS(pa, "labels", `[...document.querySelectorAll('input, select, textarea')].every(e => e.labels && e.labels.length > 0)`)
	br.run(pa, "keyboard", chromedp.Focus("#nav-megaphone", chromedp.ByID), chromedp.KeyEvent("\r"))
	br.waitJS(pa, "keyboard navigation", `!document.getElementById('megaphone').hidden && document.getElementById('pipes').hidden`)

	// Megaphone on A: create, tail, write 3 events.
	br.run(pa, "megaphone", chromedp.WaitVisible("#mp-create", chromedp.ByID),
		chromedp.Click("#mp-create", chromedp.ByID))
	br.waitJS(pa, "tail live", fmt.Sprintf(`%s === "(live)"`, text("mp-tail-state")))
	for i := 1; i <= 3; i++ {
		br.run(pa, "write", chromedp.SetValue("#mp-body", fmt.Sprintf(`{"n": %d, "from": "console test"}`, i), chromedp.ByID),
			chromedp.Click("#mp-send", chromedp.ByID))
		br.waitJS(pa, "event shown", fmt.Sprintf(`document.querySelectorAll('#mp-events li').length === %d && %s.includes('"n":%d')`, i, text("mp-events"), i))
	}
	br.screenshot(pa, "console-megaphone.png")

	// Middleman on A: SUB then PUB comes back.
	br.run(pa, "middleman", show("middleman"), chromedp.WaitVisible("#mm-key", chromedp.ByID),
		chromedp.SendKeys("#mm-key", "svc-key", chromedp.ByID), chromedp.Click("#mm-go", chromedp.ByID))
	br.waitJS(pa, "mm connected", fmt.Sprintf(`%s.startsWith("connected as ")`, text("mm-status")))
	br.run(pa, "SUB", chromedp.SetValue("#mm-cmd", "SUB", chromedp.ByID), chromedp.SetValue("#mm-topic", "console.demo", chromedp.ByID),
		chromedp.Click("#mm-send-go", chromedp.ByID))
	br.run(pa, "PUB", chromedp.SetValue("#mm-cmd", "PUB", chromedp.ByID), chromedp.SetValue("#mm-body", "ping from the browser", chromedp.ByID),
		chromedp.Click("#mm-send-go", chromedp.ByID))
	br.waitJS(pa, "PUB received", `[...document.querySelectorAll('#mm-log li:not(.out)')].some(li => li.textContent.startsWith('PUB console.demo') && li.textContent.includes('ping from the browser') && li.textContent.includes('Cid: '))`)
	br.screenshot(pa, "console-middleman.png")

	// The overview after that traffic and one relayed request.
	resp, err := http.Get(a.URL() + "/relay/billing-api/")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("relay: %d", resp.StatusCode)
	}
	br.run(pa, "overview A", show("overview"))
	br.waitJS(pa, "traffic drawn", fmt.Sprintf(`%s.includes("Megaphone channels (1)") && !%s.includes("peak 0.10")`, text("overview"), text("charts")))
	br.waitJS(pa, "agent served", `[...document.querySelectorAll('#relay tbody td')].some(td => td.textContent === '1')`)
	br.screenshot(pa, "console-overview.png")

	// B's console lists both gateways too; at phone width nothing overflows.
	br.run(pb, "overview B", show("overview"))
	br.waitJS(pb, "B lists both", fmt.Sprintf(`(() => { const t = %s; return t.includes(%q) && t.includes(%q); })()`,
		text("cluster"), a.Addr(), bgw.Addr()))
	br.run(pb, "phone width", chromedp.EmulateViewport(390, 844))
	for _, page := range []string{"overview", "pipes", "megaphone", "middleman"} {
		br.run(pb, "phone "+page, show(page))
		if page == "overview" {
			br.screenshot(pb, "console-phone.png")
		}
		br.waitJS(pb, "phone "+page+" fits", `document.documentElement.scrollWidth <= window.innerWidth || console.log('too wide: ' + [...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > window.innerWidth).slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className).join(' '))`)
	}
	br.checkProblems()
}

func pageText(t *testing.T, br *browserSession, ctx context.Context) string {
	t.Helper()
	var s string
	br.run(ctx, "page text", chromedp.Evaluate(`document.documentElement.outerHTML + document.body.innerText`, &s))
	return s
}
