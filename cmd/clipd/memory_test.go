// memory_test.go: --memory is a bound on the real process: a clipd run fetching many large
// bodies whose last byte comes late (every connection holds an almost whole body at once)
// and a run decoding a 16-bit RGBA PNG (an 8 B/px intermediate) stay within the budget
// plus the stated margin, measured as the process's VmHWM in /proc/PID/status.
package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipd/clipd/embed"
	"github.com/clipd/clipd/internal/pipeline/plan"
)

// vmHWM reads the peak resident set (VmHWM) of pid from /proc, in bytes; 0 once it is gone.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// runSampled runs the binary with args, sampling its VmHWM every 20 ms, and returns the
// largest value seen and the output; it fails the test when the run fails.
func runSampled(t *testing.T, ctx context.Context, args ...string) (int64, string) {
	t.Helper()
	cmd, out := startClipd(t, ctx, nil, args...)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var peak int64
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("clipd %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return peak, out.String()
		case <-tick.C:
			peak = max(peak, vmHWM(cmd.Process.Pid))
		}
	}
}

// bigBody is a small valid JPEG followed by padding to n bytes (decoders stop at the JPEG's
// end marker), so every large body still embeds.
func bigBody(t *testing.T, n int) []byte {
	img := readFile(t, filepath.Join(e2eDir, "img_00.jpg"))
	b := make([]byte, n)
	copy(b, img)
	return b
}

// slowLastByteServer serves body at any path, sending all but its last byte at once and the
// last one after lastByte; chunked leaves out the Content-Length.
func slowLastByteServer(t *testing.T, body []byte, lastByte time.Duration, chunked bool) (*httptest.Server, *atomic.Int64) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "image/jpeg")
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		w.Write(body[:len(body)-1])
		w.(http.Flusher).Flush()
		select {
		case <-time.After(lastByte):
		case <-r.Context().Done():
			return
		}
		w.Write(body[len(body)-1:])
	}))
	t.Cleanup(srv.Close)
	return srv, &requests
}

// memoryMargin is what the process may hold beyond --memory: the part of the Go runtime, the
// C libraries (libhdf5, libjpeg-turbo, the engine's threads) and the heap's fragmentation that
// the plan's constants do not bound exactly (README, "Memory").
const memoryMargin = embed.MemoryMargin

func TestMemoryBudgetHoldsLargeSlowBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and moves ~1.5 GB over loopback")
	}
	const (
		budget = 400 << 20
		size   = 16 << 20
		n      = 96
	)
	body := bigBody(t, size)
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			srv, requests := slowLastByteServer(t, body, 700*time.Millisecond, chunked)
			urls := make([]string, n)
			for i := range urls {
				urls[i] = fmt.Sprintf("%s/big/%d.jpg", srv.URL, i)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			out := t.TempDir()
			// 48 connections x 16 MiB = 768 MiB of bodies if every connection held one.
			peak, log := runSampled(t, ctx, embedArgs(writeList(t, urls), out, "--memory", "400MiB",
				"--connections", "48", "--timeout", "60s", "--retries", "0")...)
			r := readH5(t, filepath.Join(out, embed.FinalName))
			t.Logf("peak RSS %s with --memory %s (margin %s), %d requests, %d rows, %d failures",
				plan.FormatBytes(peak), plan.FormatBytes(budget), plan.FormatBytes(memoryMargin), requests.Load(), len(r.URLs), len(r.FailedURLs))
			if len(r.URLs) != n {
				t.Errorf("%d of %d large bodies embedded (failures %v)\n%s", len(r.URLs), n, r.Reasons, log)
			}
			if peak > budget+memoryMargin {
				t.Errorf("peak RSS %s is over --memory %s + margin %s", plan.FormatBytes(peak), plan.FormatBytes(budget), plan.FormatBytes(memoryMargin))
			}
		})
	}
}

// png16 encodes a w x h 16-bit RGBA PNG with a gradient (Go decodes it to NRGBA64: 8 B/px).
func png16(t *testing.T, w, h int) []byte {
	m := image.NewNRGBA64(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetNRGBA64(x, y, color.NRGBA64{R: uint16(x * 7), G: uint16(y * 13), B: uint16(x ^ y), A: 0xffff})
		}
	}
	var b bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// A 16-bit RGBA PNG within the pixel limit decodes through an 8 B/px intermediate: a run of
// several stays within the budget (they wait for each other's memory), and one whose decode
// cannot fit the budget at all fails with the reason instead of being decoded.
func TestMemoryBudgetHolds16BitPNG(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const budget = 400 << 20
	// 4000 x 4000: 16 MP (within the plan's 24 MP at 400 MiB), 122 MiB decoding as NRGBA64
	// plus 46 MiB of RGB: two at once would not fit the decoders' 192 MiB, so they take turns.
	big := png16(t, 4000, 4000)
	// 6000 x 4000 = 24 MP, still within the pixel limit, but 183 MiB of NRGBA64 + 69 MiB of
	// RGB: more than the decoders' whole budget.
	huge := png16(t, 6000, 4000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		if r.URL.Path == "/huge.png" {
			w.Write(huge)
			return
		}
		w.Write(big)
	}))
	defer srv.Close()
	urls := make([]string, 8)
	for i := range urls {
		urls[i] = fmt.Sprintf("%s/p/%d.png", srv.URL, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := t.TempDir()
	peak, log := runSampled(t, ctx, embedArgs(writeList(t, append(urls, srv.URL+"/huge.png")), out, "--memory", "400MiB", "--decoders", "2", "--timeout", "60s")...)
	r := readH5(t, filepath.Join(out, embed.FinalName))
	t.Logf("peak RSS %s with --memory %s (margin %s), %d rows, failures %v", plan.FormatBytes(peak), plan.FormatBytes(budget),
		plan.FormatBytes(memoryMargin), len(r.URLs), r.Reasons)
	if len(r.URLs) != len(urls) {
		t.Errorf("%d of %d 16-bit PNGs embedded: %v\n%s", len(r.URLs), len(urls), r.Reasons, log)
	}
	if len(r.Reasons) != 1 || !strings.HasPrefix(r.Reasons[0], "too large for --memory (decoding needs 264 MiB, over the ") {
		t.Errorf("the 6000x4000 16-bit PNG: failures %v, want one \"too large for --memory (decoding needs 264 MiB, ...)\"", r.Reasons)
	}
	if peak > budget+memoryMargin {
		t.Errorf("peak RSS %s is over --memory %s + margin %s", plan.FormatBytes(peak), plan.FormatBytes(budget), plan.FormatBytes(memoryMargin))
	}
}
