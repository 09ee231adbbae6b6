package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// child is a proxy running in a child process, as the parent sees it.
type child struct {
	kind  string
	cmd   *exec.Cmd
	hello childHello

	mu     sync.Mutex // one command at a time
	stdin  *os.File
	stdout *bufio.Reader
	stderr *tailBuffer
}

// startChild starts exe as a child of the given kind and waits for its hello.
func startChild(exe, kind string, cfg childConfig) (*child, error) {
	conf, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	// The upstreams are on loopback: no proxy from the environment applies.
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	// The upstreams' certificate is the child's only system root, as a
	// public upstream's CA would be: bare goproxy verifies upstreams against
	// the system roots.
	roots := filepath.Join(cfg.CADir, "upstream-roots.pem")
	if err := os.WriteFile(roots, cfg.UpstreamCA, 0o644); err != nil {
		return nil, err
	}
	cmd.Env = append(cmd.Env, "SSL_CERT_FILE="+roots, "SSL_CERT_DIR="+cfg.CADir)
	cmd.Env = append(cmd.Env, envChild+"="+kind, envConfig+"="+string(conf))
	c := &child{kind: kind, cmd: cmd, stderr: &tailBuffer{max: 64 << 10}}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, c.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s child: %w", kind, err)
	}
	_ = inR.Close()
	_ = outW.Close()
	c.stdin, c.stdout = inW, bufio.NewReader(outR)

	type result struct {
		h   childHello
		err error
	}
	got := make(chan result, 1)
	go func() {
		line, err := c.stdout.ReadBytes('\n')
		var h childHello
		if err == nil {
			err = json.Unmarshal(line, &h)
		}
		got <- result{h, err}
	}()
	select {
	case r := <-got:
		switch {
		case r.err != nil:
			c.stop()
			return nil, fmt.Errorf("%s child: %v; stderr: %s", kind, r.err, c.stderr)
		case r.h.Error != "":
			c.stop()
			return nil, fmt.Errorf("%s child: %s", kind, r.h.Error)
		}
		c.hello = r.h
	case <-time.After(60 * time.Second):
		c.stop()
		return nil, fmt.Errorf("%s child: no hello within a minute; stderr: %s", kind, c.stderr)
	}
	return c, nil
}

// command sends one command line and decodes the answer into v (may be nil).
func (c *child) command(line string, v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := fmt.Fprintln(c.stdin, line); err != nil {
		return err
	}
	ans, err := c.stdout.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("%s child: %v; stderr: %s", c.kind, err, c.stderr)
	}
	var e struct{ Error string }
	if json.Unmarshal(ans, &e) == nil && e.Error != "" {
		return errors.New(e.Error)
	}
	if v != nil {
		return json.Unmarshal(ans, v)
	}
	return nil
}

func (c *child) stats() (childStats, error) {
	var s childStats
	err := c.command("stats", &s)
	return s, err
}

func (c *child) mem() (childStats, error) {
	var s childStats
	err := c.command("mem", &s)
	return s, err
}

// resetPeakRSS resets the kernel's high-water mark of the child's resident
// set (Linux: writing 5 to clear_refs), so that peakRSS covers what follows.
func (c *child) resetPeakRSS() {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", c.cmd.Process.Pid), []byte("5"), 0)
}

// peakRSS returns the child's peak resident set size in bytes (VmHWM), or
// 0 where /proc does not tell.
func (c *child) peakRSS() uint64 { return c.status("VmHWM") }

// status returns a size field of the child's /proc/<pid>/status, such as
// VmRSS, in bytes, or 0 where /proc does not tell.
func (c *child) status(field string) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// stop closes the child's stdin, which ends it, and waits a little.
func (c *child) stop() {
	if c.stdin != nil {
		_ = c.stdin.Close()
	}
	done := make(chan struct{})
	go func() {
		_ = c.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
