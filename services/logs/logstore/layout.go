package logstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The layout under the root (see README.md):
//
//	segments/YYYY/MM/DD/HH.jsonl.gz   sealed segment of hour HH (UTC)
//	segments/YYYY/MM/DD/HH.jsonl      open segment of that hour, while it is written
//	segments/YYYY/MM/DD/HH.accounts   index sidecar: the accounts of the sealed segment
//	segments/YYYY/MM/DD/HH.lock       the hour's lock file (flock), never removed
//	segments/YYYY/MM/DD/.HH.*.tmp-*   a replacement being written; stale after a crash
const (
	segmentsDir   = "segments"
	sealedSuffix  = ".jsonl.gz"
	openSuffix    = ".jsonl"
	sidecarSuffix = ".accounts"
	lockSuffix    = ".lock"
	tmpMarker     = ".tmp-"

	dirPerm  = 0o750
	filePerm = 0o640
)

// hourID names a segment: hours since the Unix epoch, UTC.
type hourID int64

// hourOf is the hour t falls in.
func hourOf(t time.Time) hourID {
	u := t.Unix()
	h := u / 3600
	if u < 0 && u%3600 != 0 {
		h--
	}
	return hourID(h)
}

// Time is the start of the hour.
func (h hourID) Time() time.Time { return time.Unix(int64(h)*3600, 0).UTC() }

// String is the segment's name in errors and logs: "2026/11/29/13". It
// holds no personal data.
func (h hourID) String() string { return h.Time().Format("2006/01/02/15") }

// validHour reports whether the hour fits the four-digit year directories.
func validHour(h hourID) bool {
	y := h.Time().Year()
	return y >= 1970 && y <= 9999
}

// paths of one hour's files.
type hourPaths struct {
	dir, sealed, open, sidecar, lock string
	// hh is the hour of day, the files' stem.
	hh string
	// name is the hour's name in errors and logs.
	name string
}

func (s *Store) paths(h hourID) hourPaths {
	t := h.Time()
	dir := filepath.Join(s.root, segmentsDir, t.Format("2006"), t.Format("01"), t.Format("02"))
	hh := t.Format("15")
	return hourPaths{
		dir:     dir,
		sealed:  filepath.Join(dir, hh+sealedSuffix),
		open:    filepath.Join(dir, hh+openSuffix),
		sidecar: filepath.Join(dir, hh+sidecarSuffix),
		lock:    filepath.Join(dir, hh+lockSuffix),
		hh:      hh,
		name:    h.String(),
	}
}

// hourFiles is what a walk found of one hour.
type hourFiles struct {
	sealed, open, sidecar bool
	// temps are names of replacements left in the day directory.
	temps []string
}

// walk lists every hour that has files under segments/. It reads
// directories only, never a segment: a year of hourly segments is 365 day
// directories, a few milliseconds. Names that do not fit the layout are
// ignored.
func (s *Store) walk(ctx context.Context) (map[hourID]*hourFiles, error) {
	out := make(map[hourID]*hourFiles)
	base := filepath.Join(s.root, segmentsDir)
	years, err := readDirNames(base)
	if err != nil {
		return nil, fmt.Errorf("list segments: %w", err)
	}
	for _, y := range years {
		year, ok := parseDigits(y, 4)
		if !ok {
			continue
		}
		months, err := readDirNames(filepath.Join(base, y))
		if err != nil {
			return nil, fmt.Errorf("list segments of %s: %w", y, err)
		}
		for _, m := range months {
			month, ok := parseDigits(m, 2)
			if !ok || month < 1 || month > 12 {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			days, err := readDirNames(filepath.Join(base, y, m))
			if err != nil {
				return nil, fmt.Errorf("list segments of %s/%s: %w", y, m, err)
			}
			for _, d := range days {
				day, ok := parseDigits(d, 2)
				if !ok || day < 1 || day > 31 {
					continue
				}
				names, err := readDirNames(filepath.Join(base, y, m, d))
				if err != nil {
					return nil, fmt.Errorf("list segments of %s/%s/%s: %w", y, m, d, err)
				}
				date := time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
				if date.Day() != day {
					continue // 02/31 and the like
				}
				for _, name := range names {
					addHourFile(out, date, name)
				}
			}
		}
	}
	return out, nil
}

// addHourFile records one file of a day directory.
func addHourFile(out map[hourID]*hourFiles, date time.Time, name string) {
	temp := false
	stem := name
	if strings.HasPrefix(name, ".") && strings.Contains(name, tmpMarker) {
		temp, stem = true, name[1:]
	}
	if len(stem) < 3 {
		return
	}
	hh, ok := parseDigits(stem[:2], 2)
	if !ok || hh > 23 {
		return
	}
	h := hourOf(date.Add(time.Duration(hh) * time.Hour))
	get := func() *hourFiles {
		f := out[h]
		if f == nil {
			f = &hourFiles{}
			out[h] = f
		}
		return f
	}
	switch rest := stem[2:]; {
	case temp:
		get().temps = append(get().temps, name)
	case rest == sealedSuffix:
		get().sealed = true
	case rest == openSuffix:
		get().open = true
	case rest == sidecarSuffix:
		get().sidecar = true
	}
}

// readDirNames lists dir sorted. A directory that vanished meanwhile
// (retention removing an old day) or a file where a directory was
// expected lists as empty: neither holds segments.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

func parseDigits(s string, n int) (int, bool) {
	if len(s) != n {
		return 0, false
	}
	for i := range len(s) {
		if !isDigit(s[i]) {
			return 0, false
		}
	}
	v, err := strconv.Atoi(s)
	return v, err == nil
}

// ensureDir creates the hour's day directory if it is missing, and makes
// the new directory entries durable: a segment renamed into a directory
// whose own entry is lost in a crash is lost with it.
func (s *Store) ensureDir(p hourPaths) error {
	if _, err := os.Stat(p.dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(p.dir, dirPerm); err != nil {
		return fmt.Errorf("create segment directory: %w", err)
	}
	// segments/YYYY/MM/DD: sync every parent up to the root, which is
	// cheap and covers whichever of them were created just now.
	for d := filepath.Dir(p.dir); ; d = filepath.Dir(d) {
		if err := syncDir(d); err != nil {
			return err
		}
		if d == s.root || d == filepath.Dir(d) {
			return nil
		}
	}
}

// syncDir makes renames and new entries in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for sync: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// createTemp creates a replacement file for one of the hour's files, in the
// same directory so that the rename is atomic. The name starts with a dot,
// the hour and the kind, so that recovery finds it and nothing mistakes it
// for a segment.
func createTemp(p hourPaths, kind string) (*os.File, error) {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand aborts the process instead
	name := filepath.Join(p.dir, "."+p.hh+kind+tmpMarker+hex.EncodeToString(b[:]))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return nil, fmt.Errorf("create temporary file: %w", err)
	}
	return f, nil
}

// discardTemp closes and removes a replacement that will not be used.
func discardTemp(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// commitTemp makes f durable and renames it over dst, then syncs the
// directory. between runs after the rename and before the directory sync:
// tests inject failures and crashes there. The rename is visible once
// renamed is true, even when err is not nil.
func commitTemp(f *os.File, dst string, beforeRename, between func() error) (renamed bool, err error) {
	if err := f.Sync(); err != nil {
		discardTemp(f)
		return false, fmt.Errorf("sync temporary file: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(f.Name())
		return false, fmt.Errorf("close temporary file: %w", err)
	}
	if beforeRename != nil {
		if err := beforeRename(); err != nil {
			_ = os.Remove(f.Name())
			return false, err
		}
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		_ = os.Remove(f.Name())
		return false, fmt.Errorf("rename temporary file: %w", err)
	}
	if between != nil {
		if err := between(); err != nil {
			return true, err
		}
	}
	return true, syncDir(filepath.Dir(dst))
}

// fileID identifies one version of a file that is only ever replaced by
// rename: a new version is a new inode.
type fileID struct {
	ino   uint64
	size  int64
	mtime int64
}

func fileIDOf(fi fs.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino = st.Ino
	}
	return id
}

// exists reports whether path exists; other errors are returned.
func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}

// sortedHours returns the hours of a walk in order.
func sortedHours(w map[hourID]*hourFiles) []hourID {
	out := make([]hourID, 0, len(w))
	for h := range w {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}
