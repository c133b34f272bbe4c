package harness

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lethe-privacy/lethe/lib/worker"
	"github.com/lethe-privacy/lethe/services/logs/logstore"
)

// LogsResult is the log erasure's two targets: many accounts erased
// together cost about one pass, and the segment rewrite keeps up with the
// obvious shell pipeline on the same segments.
type LogsResult struct {
	Segments          int   `json:"segments"`
	AccountsTogether  int   `json:"accounts_together"`
	OtherAccounts     int   `json:"other_accounts"`
	RecordsPerHour    int   `json:"records_per_account_and_hour"`
	UncompressedBytes int64 `json:"uncompressed_bytes"`
	CompressedBytes   int64 `json:"compressed_bytes"`
	Repeat            int   `json:"repeat"`
	// LingerMS and Parallelism are the store's settings, the worker's
	// defaults.
	LingerMS    float64 `json:"linger_ms"`
	Parallelism int     `json:"parallelism"`
	// OneSeconds and TogetherSeconds are the medians of erasing one account
	// and AccountsTogether accounts at once (each Purge call as the worker
	// makes it, the linger included); TogetherRatio is their quotient.
	OneSeconds       float64 `json:"one_seconds"`
	TogetherSeconds  float64 `json:"together_seconds"`
	TogetherRatio    float64 `json:"together_ratio"`
	TogetherPasses   int64   `json:"together_passes"`
	TogetherRewrites int64   `json:"together_rewrites"`
	// ShellSeconds is the median of `zcat | grep -v -F -f | gzip -1` over
	// the same segments, one after another, removing the same accounts;
	// RewriteRatio is ShellSeconds over TogetherSeconds (the store's
	// throughput over the pipeline's).
	ShellSeconds float64 `json:"shell_seconds"`
	RewriteMBps  float64 `json:"rewrite_mb_per_sec"`
	ShellMBps    float64 `json:"shell_mb_per_sec"`
	RewriteRatio float64 `json:"rewrite_ratio"`
}

// measureLogs builds the segments once under dir, then for each repeat
// erases from fresh copies: one account, all AccountsTogether at once, and
// the same accounts with the shell pipeline.
func measureLogs(ctx context.Context, dir string, together, others, hours, perHour, repeat int, progress func(string)) (LogsResult, error) {
	res := LogsResult{Segments: hours, AccountsTogether: together, OtherAccounts: others, RecordsPerHour: perHour,
		Repeat: repeat, LingerMS: float64(logstore.DefaultLinger.Microseconds()) / 1000, Parallelism: min(runtime.NumCPU(), 4)}
	for _, tool := range []string{"bash", "zcat", "grep", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return res, fmt.Errorf("the log target needs %s on PATH to run the shell pipeline: install it", tool)
		}
	}
	erased := make([]string, together)
	for i := range erased {
		erased[i] = fmt.Sprintf("log-%04d", i)
	}
	all := slices.Clone(erased)
	for i := range others {
		all = append(all, fmt.Sprintf("log-stay-%04d", i))
	}
	template := filepath.Join(dir, "template")
	start := time.Now().UTC().Truncate(time.Hour).Add(-time.Duration(hours+2) * time.Hour)
	if err := writeSegments(ctx, template, all, start, hours, perHour, 7); err != nil {
		return res, err
	}
	segments, err := sealedSegments(template)
	if err != nil {
		return res, err
	}
	for _, seg := range segments {
		raw, packed, err := segmentSize(seg)
		if err != nil {
			return res, err
		}
		res.UncompressedBytes += raw
		res.CompressedBytes += packed
	}
	patterns := filepath.Join(dir, "patterns.txt")
	var pat strings.Builder
	for _, a := range erased {
		pat.WriteString(`"account_id":"` + a + `"` + "\n")
	}
	if err := os.WriteFile(patterns, []byte(pat.String()), 0o600); err != nil {
		return res, fmt.Errorf("write the grep patterns: %w", err)
	}
	progress(fmt.Sprintf("logs: %d segments of %.1f MB (%.1f MB compressed) built", len(segments),
		float64(res.UncompressedBytes)/1e6, float64(res.CompressedBytes)/1e6))

	var ones, manys, shells []float64
	for r := range repeat {
		one, _, err := eraseCopy(ctx, template, filepath.Join(dir, fmt.Sprintf("one-%d", r)), erased[:1])
		if err != nil {
			return res, err
		}
		many, st, err := eraseCopy(ctx, template, filepath.Join(dir, fmt.Sprintf("many-%d", r)), erased)
		if err != nil {
			return res, err
		}
		res.TogetherPasses, res.TogetherRewrites = st.Passes, st.SegmentRewrites
		shell, err := shellFilter(ctx, template, filepath.Join(dir, fmt.Sprintf("shell-%d", r)), patterns)
		if err != nil {
			return res, err
		}
		ones, manys, shells = append(ones, one.Seconds()), append(manys, many.Seconds()), append(shells, shell.Seconds())
		progress(fmt.Sprintf("logs %d/%d: 1 account %.0f ms, %d together %.0f ms, shell %.0f ms",
			r+1, repeat, one.Seconds()*1000, together, many.Seconds()*1000, shell.Seconds()*1000))
	}
	res.OneSeconds, res.TogetherSeconds, res.ShellSeconds = median(ones), median(manys), median(shells)
	res.TogetherRatio = res.TogetherSeconds / res.OneSeconds
	res.RewriteMBps = float64(res.UncompressedBytes) / 1e6 / res.TogetherSeconds
	res.ShellMBps = float64(res.UncompressedBytes) / 1e6 / res.ShellSeconds
	res.RewriteRatio = res.ShellSeconds / res.TogetherSeconds
	return res, nil
}

// eraseCopy copies template to dir, opens a store there with the worker's
// defaults and erases accounts with one concurrent Purge call each, as the
// worker's handlers make them. It returns the time from the first call to
// the last answer.
func eraseCopy(ctx context.Context, template, dir string, accounts []string) (time.Duration, logstore.Stats, error) {
	if err := os.CopyFS(dir, os.DirFS(template)); err != nil {
		return 0, logstore.Stats{}, fmt.Errorf("copy the log segments: %w", err)
	}
	st, err := logstore.Open(ctx, dir)
	if err != nil {
		return 0, logstore.Stats{}, fmt.Errorf("open the log segments: %w", err)
	}
	defer st.Close()
	errs := make([]error, len(accounts))
	var wg sync.WaitGroup
	start := time.Now()
	for i, a := range accounts {
		wg.Go(func() {
			out, err := st.Purge(ctx, worker.Task{JobID: "bench", AccountID: a, Category: "logs", Stage: "erase", Action: logstore.ActionDelete})
			if err == nil && out.ItemsPurged == 0 {
				err = fmt.Errorf("erase event logs of %s: nothing removed", a)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	took := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return 0, logstore.Stats{}, err
		}
	}
	stats := st.Stats()
	return took, stats, os.RemoveAll(dir)
}

// shellFilter copies template to dir and rewrites each sealed segment with
// the obvious pipeline, one segment after another.
func shellFilter(ctx context.Context, template, dir, patterns string) (time.Duration, error) {
	if err := os.CopyFS(dir, os.DirFS(template)); err != nil {
		return 0, fmt.Errorf("copy the log segments: %w", err)
	}
	segments, err := sealedSegments(dir)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	for _, seg := range segments {
		cmd := exec.CommandContext(ctx, "bash", "-c", `set -o pipefail; zcat "$1" | grep -v -F -f "$2" | gzip -1 > "$3"`,
			"filter", seg, patterns, seg+".new")
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("zcat | grep -v | gzip -1 on %s: %w: %s", seg, err, out)
		}
	}
	took := time.Since(start)
	return took, os.RemoveAll(dir)
}

// sealedSegments lists the sealed segments under root.
func sealedSegments(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".jsonl.gz") {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the log segments: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no sealed segment under %s", root)
	}
	slices.Sort(out)
	return out, nil
}

// segmentSize returns the uncompressed and compressed bytes of a segment.
func segmentSize(path string) (raw, packed int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("read segment: %w", err)
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, 0, fmt.Errorf("read segment: %w", err)
	}
	raw, err = io.Copy(io.Discard, zr)
	if err != nil {
		return 0, 0, fmt.Errorf("read segment: %w", err)
	}
	return raw, fi.Size(), nil
}

// median of xs (not empty).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
