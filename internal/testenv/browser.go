package testenv

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var browserState struct {
	once sync.Once
	ctx  context.Context // owns the browser; tabs are its children
	err  error
}

// Browser returns a chromedp context for a new tab of the package's headless
// Chromium, which starts on first use and stops when the package's tests end.
// The tab, in a browser context of its own (no shared cookies), closes when
// the test ends.
func Browser(tb testing.TB) context.Context {
	tb.Helper()
	needsReal(tb, "Chromium")
	browserState.once.Do(func() { browserState.ctx, browserState.err = startBrowser(tb) })
	if browserState.err != nil {
		Unavailable(tb, "browser: %v", browserState.err)
	}
	// Each test gets its own browser context: tabs of different tests
	// share no cookies, so one test's login never leaks into another.
	ctx, cancel := chromedp.NewContext(browserState.ctx, chromedp.WithNewBrowserContext())
	tb.Cleanup(cancel)
	return ctx
}

func startBrowser(tb testing.TB) (context.Context, error) {
	chromium, err := ensureCommand(tb, "chromium", "chromium")
	if err != nil {
		return nil, err
	}
	// Without UserDataDir the allocator gives each browser a fresh profile
	// directory and removes it after the browser exits.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// The first Do binds the browser's life to ctx, so it must be a context
	// that lives until the package ends, without a timeout.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		return nil, fmt.Errorf("start chromium %s: %w", chromium, err)
	}
	atExit(func() {
		// A graceful close lets Chromium reap its helper processes.
		closeCtx, cancelClose := context.WithTimeout(ctx, 10*time.Second)
		defer cancelClose()
		if err := chromedp.Cancel(closeCtx); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: browser: close chromium: %v\n", err)
		}
		cancel()
		cancelAlloc() // waits for the process to exit and its profile to go
	})
	return ctx, nil
}
