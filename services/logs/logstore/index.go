package logstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"
	"unique"

	"go.uber.org/zap"
)

// The index says which accounts appear in which sealed segment. On disk it
// is one sidecar per sealed segment (HH.accounts); in memory a map from
// account to hours, built from the sidecars at Open and kept fresh by
// refresh, which every erasure pass and footprint runs first.
//
// Its one invariant: a sidecar never misses an account that has a record
// in its segment. Listing an account that has none costs one wasted read
// and is harmless. Every change keeps it: a segment that gains accounts
// (seal, seed) gets its new sidecar before the segment is renamed into
// place; one that loses accounts (erasure) gets it after.
//
// Why one sidecar per segment and not one index file: a segment and its
// sidecar change together under the hour's lock, so two processes sealing
// or erasing different hours never contend for a shared file, a damaged
// sidecar costs one segment's rebuild, and a sealed segment copied in by an
// operator is indexed the next time it is seen without its sidecar.

// sidecarHeader starts every sidecar; the number is the format version.
const sidecarHeader = "lethe-logs-accounts 1\n"

// errCorruptSidecar marks a sidecar that does not parse. It never leaves
// the package: the segment is re-indexed instead.
var errCorruptSidecar = errors.New("corrupt index sidecar")

// encodeSidecar writes the header, the sorted unique account ids one per
// line, and a trailer "end <count> <crc32>" over the id lines. The trailer
// catches truncation and bit rot, which a rename-based writer alone cannot.
func encodeSidecar(accounts []string) []byte {
	var b bytes.Buffer
	b.WriteString(sidecarHeader)
	start := b.Len()
	for _, a := range accounts {
		b.WriteString(a)
		b.WriteByte('\n')
	}
	sum := crc32.ChecksumIEEE(b.Bytes()[start:])
	fmt.Fprintf(&b, "end %d %08x\n", len(accounts), sum)
	return b.Bytes()
}

// decodeSidecar parses a sidecar, checking header, order, count and
// checksum. Its errors quote nothing of the content.
func decodeSidecar(b []byte) ([]string, error) {
	rest, ok := bytes.CutPrefix(b, []byte(sidecarHeader))
	if !ok {
		return nil, fmt.Errorf("%w: bad header", errCorruptSidecar)
	}
	body, trailer, ok := cutLastLine(rest)
	if !ok {
		return nil, fmt.Errorf("%w: no trailer", errCorruptSidecar)
	}
	var count int
	var sum uint32
	if n, err := fmt.Sscanf(string(trailer), "end %d %08x\n", &count, &sum); n != 2 || err != nil {
		return nil, fmt.Errorf("%w: bad trailer", errCorruptSidecar)
	}
	if crc32.ChecksumIEEE(body) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorruptSidecar)
	}
	accounts := make([]string, 0, count)
	for len(body) > 0 {
		line, next, _ := bytes.Cut(body, []byte{'\n'})
		body = next
		if checkAccountID(string(line)) != nil {
			return nil, fmt.Errorf("%w: invalid account id on line %d", errCorruptSidecar, len(accounts)+2)
		}
		a := unique.Make(string(line)).Value()
		if len(accounts) > 0 && accounts[len(accounts)-1] >= a {
			return nil, fmt.Errorf("%w: accounts out of order on line %d", errCorruptSidecar, len(accounts)+2)
		}
		accounts = append(accounts, a)
	}
	if len(accounts) != count {
		return nil, fmt.Errorf("%w: %d accounts, trailer says %d", errCorruptSidecar, len(accounts), count)
	}
	return accounts, nil
}

// cutLastLine splits b, which must end in a newline, before its last line.
func cutLastLine(b []byte) (before, last []byte, ok bool) {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, nil, false
	}
	i := bytes.LastIndexByte(b[:len(b)-1], '\n')
	return b[:i+1], b[i+1:], true
}

// index is the in-memory account→segments map. Only refresh and
// RebuildIndex change it, under Store.refreshMu, always from what is on
// disk at that moment; the writers only write sidecars. So a slow refresh
// can never overwrite a newer entry with an older one.
type index struct {
	mu       sync.RWMutex
	hours    map[hourID]*indexEntry
	accounts map[string][]hourID // sorted
}

type indexEntry struct {
	sidecar  fileID
	accounts []string // sorted, interned
}

func newIndex() *index {
	return &index{hours: make(map[hourID]*indexEntry), accounts: make(map[string][]hourID)}
}

// set replaces the hour's entry.
func (x *index) set(h hourID, id fileID, accounts []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var old []string
	if e := x.hours[h]; e != nil {
		old = e.accounts
	}
	i, j := 0, 0
	for i < len(old) || j < len(accounts) {
		switch {
		case j == len(accounts) || (i < len(old) && old[i] < accounts[j]):
			x.removeHour(old[i], h)
			i++
		case i == len(old) || accounts[j] < old[i]:
			x.addHour(accounts[j], h)
			j++
		default:
			i++
			j++
		}
	}
	x.hours[h] = &indexEntry{sidecar: id, accounts: accounts}
}

// drop forgets an hour whose sealed segment is gone.
func (x *index) drop(h hourID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e := x.hours[h]; e != nil {
		for _, a := range e.accounts {
			x.removeHour(a, h)
		}
		delete(x.hours, h)
	}
}

func (x *index) addHour(a string, h hourID) {
	hs := x.accounts[a]
	if i, found := slices.BinarySearch(hs, h); !found {
		x.accounts[a] = slices.Insert(hs, i, h)
	}
}

func (x *index) removeHour(a string, h hourID) {
	hs := x.accounts[a]
	if i, found := slices.BinarySearch(hs, h); found {
		hs = slices.Delete(hs, i, i+1)
		if len(hs) == 0 {
			delete(x.accounts, a)
			return
		}
		x.accounts[a] = hs
	}
}

// hoursOf returns a copy of the sealed hours that list account.
func (x *index) hoursOf(account string) []hourID {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return slices.Clone(x.accounts[account])
}

// known returns the hours the index holds and their sidecar versions.
func (x *index) known() map[hourID]fileID {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make(map[hourID]fileID, len(x.hours))
	for h, e := range x.hours {
		out[h] = e.sidecar
	}
	return out
}

// size counts indexed segments and accounts.
func (x *index) size() (segments, accounts int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.hours), len(x.accounts)
}

// refresh brings the in-memory index up to what is on disk, as walk found
// it: it loads the sidecars that are new or replaced since the last
// refresh (one lstat per sealed segment, a read only for changed ones),
// re-indexes sealed segments whose sidecar is missing or damaged, and
// forgets segments that are gone. Another process may have sealed, seeded
// or erased since: this is what makes the index safe to share.
func (s *Store) refresh(ctx context.Context, w map[hourID]*hourFiles) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	known := s.index.known()
	for h, f := range w {
		if !f.sealed {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		p := s.paths(h)
		if f.sidecar {
			fi, err := os.Lstat(p.sidecar)
			if err == nil {
				if id, ok := known[h]; ok && id == fileIDOf(fi) {
					continue
				}
				id, accounts, err := loadSidecar(p.sidecar)
				if err == nil {
					s.index.set(h, id, accounts)
					continue
				}
				if !errors.Is(err, errCorruptSidecar) && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("read index of segment %s: %w", p.name, err)
				}
				if errors.Is(err, errCorruptSidecar) {
					s.log.Warn("index sidecar damaged, re-indexing its segment", zap.String("segment", p.name), zap.Error(err))
				}
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("stat index of segment %s: %w", p.name, err)
			}
		}
		if err := s.indexHour(ctx, h); err != nil {
			return err
		}
	}
	for h := range known {
		if f := w[h]; f == nil || !f.sealed {
			s.index.drop(h)
		}
	}
	return nil
}

// loadSidecar reads a sidecar and the version it read, from one open file
// so that the two always match.
func loadSidecar(path string) (fileID, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileID{}, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileID{}, nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fileID{}, nil, err
	}
	accounts, err := decodeSidecar(b)
	if err != nil {
		return fileID{}, nil, err
	}
	return fileIDOf(fi), accounts, nil
}

// indexHour rebuilds one sealed segment's sidecar from the segment, under
// the hour's lock, and loads it. Callers hold refreshMu. A segment that is
// gone meanwhile is dropped.
func (s *Store) indexHour(ctx context.Context, h hourID) error {
	p := s.paths(h)
	l, err := s.lockHour(ctx, p, true)
	if err != nil {
		return fmt.Errorf("index segment %s: %w", p.name, err)
	}
	defer l.unlock()
	f, err := os.Open(p.sealed)
	if errors.Is(err, fs.ErrNotExist) {
		s.index.drop(h)
		return nil
	}
	if err != nil {
		return fmt.Errorf("index segment %s: %w", p.name, err)
	}
	defer f.Close()
	lf := lineFilter{collect: make(map[string]struct{})}
	if err := lf.runGzip(ctx, f); err != nil {
		return fmt.Errorf("index segment %s: %w", p.name, err)
	}
	s.noteMalformed(p, lf.malformed)
	accounts := sortedKeys(lf.collect)
	id, err := s.writeSidecar(p, accounts)
	if err != nil {
		return fmt.Errorf("index segment %s: %w", p.name, err)
	}
	s.index.set(h, id, accounts)
	s.stats.sidecarsRebuilt.Add(1)
	return nil
}

// writeSidecar replaces the hour's sidecar atomically and returns the new
// version. The caller holds the hour's lock.
func (s *Store) writeSidecar(p hourPaths, accounts []string) (fileID, error) {
	f, err := createTemp(p, sidecarSuffix)
	if err != nil {
		return fileID{}, err
	}
	if _, err := f.Write(encodeSidecar(accounts)); err != nil {
		discardTemp(f)
		return fileID{}, fmt.Errorf("write index sidecar: %w", err)
	}
	if _, err := commitTemp(f, p.sidecar, nil, nil); err != nil {
		return fileID{}, fmt.Errorf("replace index sidecar: %w", err)
	}
	fi, err := os.Lstat(p.sidecar)
	if err != nil {
		return fileID{}, fmt.Errorf("stat index sidecar: %w", err)
	}
	return fileIDOf(fi), nil
}

// sortedKeys returns the set's members sorted and interned.
func sortedKeys(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, unique.Make(a).Value())
	}
	slices.Sort(out)
	return out
}

// mergeSorted returns the sorted union of a sorted slice and more ids.
func mergeSorted(sorted []string, more ...string) []string {
	out := slices.Clone(sorted)
	for _, a := range more {
		if i, found := slices.BinarySearch(out, a); !found {
			out = slices.Insert(out, i, unique.Make(a).Value())
		}
	}
	return out
}
