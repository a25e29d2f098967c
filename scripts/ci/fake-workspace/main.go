// Command fake-workspace serves a TEST DOUBLE of a Databricks workspace on 127.0.0.1 for
// scripts/ci/databricks-cli-checks.sh: the Databricks CLI's own fake workspace, libs/testserver of
// github.com/databricks/cli (the server its acceptance tests deploy bundles against), imported as
// a Go module dependency at the CLI version the pipelines pin. None of its code lives here.
//
// Each bearer token is one workspace with its own state (libs/testserver/server.go,
// workspaceKeyForToken): a token "dbapi1<key>" authenticates as a service principal and
// "dbapi0<key>" as a user (libs/testserver/fake_workspace.go, userForToken), and both see the
// workspace <key>.
//
// Usage: fake-workspace -url-file PATH [-python PY -runner SCRIPT]
// With -python and -runner it also RUNS the jobs the CLI deployed (jobs.go); without them,
// libs/testserver's own run endpoints answer. Either way it answers the Unity Catalog registry's
// registered-models get/update that link a model to its deployment job (registry.go). It writes
// its base URL to PATH once it listens, serves until SIGTERM or SIGINT, then prints how many
// requests it could not answer and exits 1 if there were any: a request with no handler
// means the CLI used an endpoint the double does not reproduce, so the check cannot be trusted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/databricks/cli/libs/testserver"
)

// serverT gives libs/testserver the methods of the CLI's internal/testutil.TestingT that it
// calls: logging, errors (counted, never fatal: a server process keeps serving) and clean-ups.
type serverT struct {
	mu       sync.Mutex
	errors   int
	cleanups []func()
	ctx      context.Context
}

func (t *serverT) Log(args ...any)                 { fmt.Fprintln(os.Stderr, args...) }
func (t *serverT) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (t *serverT) Error(args ...any)               { t.fail(fmt.Sprint(args...)) }
func (t *serverT) Errorf(format string, args ...any) {
	t.fail(fmt.Sprintf(format, args...))
}
func (t *serverT) Fatal(args ...any)                 { t.fail(fmt.Sprint(args...)) }
func (t *serverT) Fatalf(format string, args ...any) { t.fail(fmt.Sprintf(format, args...)) }
func (t *serverT) Skip(args ...any)                  {}
func (t *serverT) Skipf(format string, args ...any)  {}
func (t *serverT) FailNow()                          { t.fail("FailNow") }
func (t *serverT) Helper()                           {}
func (t *serverT) Context() context.Context          { return t.ctx }
func (t *serverT) Setenv(key, value string)          { os.Setenv(key, value) }

func (t *serverT) TempDir() string {
	dir, err := os.MkdirTemp("", "fake-workspace-")
	if err != nil {
		t.fail(err.Error())
		return os.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (t *serverT) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *serverT) fail(msg string) {
	t.mu.Lock()
	t.errors++
	t.mu.Unlock()
	fmt.Fprintln(os.Stderr, "fake-workspace ERROR:", msg)
}

func (t *serverT) close() int {
	t.mu.Lock()
	cleanups := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.errors
}

func main() {
	urlFile := flag.String("url-file", "", "write the server's base URL to this file once it listens")
	python := flag.String("python", "", "the Python that runs jobs (with -runner)")
	runner := flag.String("runner", "", "the job runner script (scripts/ci/fake_workspace_runner.py)")
	flag.Parse()
	if *urlFile == "" {
		fmt.Fprintln(os.Stderr, "usage: fake-workspace -url-file PATH")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	t := &serverT{ctx: ctx}

	server := testserver.New(t) // httptest: listens on 127.0.0.1, a free port
	var jobRuns *jobRunner
	if *python != "" && *runner != "" {
		var err error
		if jobRuns, err = newJobRunner(t, *python, *runner, server.URL); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		jobRuns.register(server) // before the defaults: the first handler of a route wins
	}
	newModelLinks().register(server) // registry.go: the model -> deployment job link (no default handler)
	testserver.AddDefaultHandlers(server)

	tmp := *urlFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(server.URL+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := os.Rename(tmp, *urlFile); err != nil { // the reader never sees a partial URL
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, "fake-workspace: serving", server.URL)

	<-ctx.Done()
	if jobRuns != nil {
		jobRuns.stopAll()
	}
	if errors := t.close(); errors > 0 {
		fmt.Fprintf(os.Stderr, "fake-workspace: %d request(s) the test double could not answer (see above)\n", errors)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "fake-workspace: stopped, every request answered")
}
