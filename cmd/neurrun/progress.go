package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress reports the advance of a long job on stderr: a bar redrawn in place on a
// terminal, plain lines (at most one every few seconds) otherwise.
type progress struct {
	w     io.Writer
	label string
	unit  string // what is counted, for example "rows"; "" for bytes
	tty   bool
	start time.Time

	mu          sync.Mutex // guards the fields below
	done, total int64
	lastDraw    time.Time
	drawn       bool
}

func newProgress(label string) *progress {
	return &progress{
		w: os.Stderr, label: label, start: time.Now(),
		tty: term.IsTerminal(int(os.Stderr.Fd())),
	}
}

// newCountProgress is newProgress for a job that counts things, such as rows,
// rather than bytes: unit names them.
func newCountProgress(label, unit string) *progress {
	p := newProgress(label)
	p.unit = unit
	return p
}

// Set records that done of total bytes (or units) are processed and redraws
// when due.
func (p *progress) Set(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total = done, total
	every := 5 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if now := time.Now(); now.Sub(p.lastDraw) >= every || (done == total && p.tty) {
		if p.drawLocked() {
			p.lastDraw = now
		}
	}
}

// Done ends the display: it draws the final state and moves to a new line.
func (p *progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn && p.tty {
		p.drawLocked()
		fmt.Fprintln(p.w)
	}
}

// drawLocked draws the current state and reports whether it did.
func (p *progress) drawLocked() bool {
	if !p.tty && time.Since(p.start) < 2*time.Second {
		return false // short jobs print nothing when not on a terminal
	}
	p.drawn = true
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", p.String())
	} else {
		fmt.Fprintln(p.w, p.String())
	}
	return true
}

// String renders the current state: label, bar, bytes (or units), rate and
// time left.
func (p *progress) String() string {
	frac := 0.0
	if p.total > 0 {
		frac = float64(p.done) / float64(p.total)
	}
	elapsed := time.Since(p.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.done) / elapsed
	}
	eta := "--"
	if rate > 0 && p.done < p.total {
		eta = time.Duration(float64(p.total-p.done) / rate * float64(time.Second)).Round(time.Second).String()
	} else if p.done >= p.total {
		eta = "0s"
	}
	const width = 30
	fill := int(frac * width)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	amounts := fmt.Sprintf("%s/%s %s/s", humanBytes(p.done), humanBytes(p.total), humanBytes(int64(rate)))
	if p.unit != "" {
		amounts = fmt.Sprintf("%d/%d %s, %.0f %s/s", p.done, p.total, p.unit, rate, p.unit)
	}
	return fmt.Sprintf("%s [%s] %3.0f%% %s eta %s", p.label, bar, frac*100, amounts, eta)
}

// humanBytes formats n in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
