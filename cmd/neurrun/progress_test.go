package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 40: "5.0 TiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestProgressPlainLines(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf, label: "import m", start: time.Now().Add(-10 * time.Second)}
	p.Set(50, 100)
	p.Set(60, 100) // too soon after the last line: not drawn
	p.Done()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "import m") || !strings.Contains(lines[0], " 50%") {
		t.Fatalf("plain progress printed %q", buf.String())
	}
	if strings.Contains(buf.String(), "\r") {
		t.Fatal("plain progress redraws in place")
	}
}
