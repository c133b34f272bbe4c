package backupstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Snapshot is one catalogued snapshot. It is a value: changing it changes
// nothing on disk.
type Snapshot struct {
	// ID names the snapshot; it starts with its creation time, so ids sort
	// by age.
	ID string
	// CreatedAt is when the snapshot began, in UTC to the second (before
	// any data was read). Rotation and re-application count from it.
	CreatedAt time.Time
	// CompletedAt is when the last file was written.
	CompletedAt time.Time
	// Databases are the dumps, in the order they were taken.
	Databases []DatabaseDump
	// Logs is the copy of the log tree, nil when the snapshot has none.
	Logs *LogsArchive
	// Accounts are the ids of every account the snapshot holds data of,
	// sorted and distinct.
	Accounts []string
}

// DatabaseDump is one database's pg_dump in a snapshot.
type DatabaseDump struct {
	Name   string
	Size   int64
	SHA256 string
	// Tables say where the database keeps account data; Restore uses them
	// to check a restored copy after re-applying erasures.
	Tables []AccountTable
}

// LogsArchive is the copy of the log segment tree in a snapshot.
type LogsArchive struct {
	Files  int
	Size   int64
	SHA256 string
}

// Holds reports whether the snapshot holds data of the account.
func (s Snapshot) Holds(accountID string) bool {
	_, ok := slices.BinarySearch(s.Accounts, accountID)
	return ok
}

// Inventory is everything found in the backup root.
type Inventory struct {
	// Snapshots are the catalogued snapshots, oldest first.
	Snapshots []Snapshot
	// Incomplete are the ids of snapshot directories without a catalog
	// entry: being taken now, or abandoned by a crash (Rotate removes
	// those). Their contents are unknown.
	Incomplete []string
	// Damaged are the ids of catalog entries that cannot be read. Their
	// contents are unknown; Rotate deletes them when their id says they
	// have expired.
	Damaged []string
}

// manifestFormat is the catalog entry format this package writes and
// reads. A newer format is refused rather than half understood.
const manifestFormat = 1

// maxManifestSize bounds what is read of a catalog entry: ~25 million
// account ids of typical length, far above any real snapshot.
const maxManifestSize = 512 << 20

type manifestJSON struct {
	Format      int          `json:"format"`
	ID          string       `json:"id"`
	CreatedAt   time.Time    `json:"created_at"`
	CompletedAt time.Time    `json:"completed_at"`
	Databases   []dumpJSON   `json:"databases"`
	Logs        *archiveJSON `json:"logs,omitempty"`
	Accounts    []string     `json:"accounts"`
}

type dumpJSON struct {
	Name   string      `json:"name"`
	Size   int64       `json:"size"`
	SHA256 string      `json:"sha256"`
	Tables []tableJSON `json:"tables"`
}

type tableJSON struct {
	Name   string `json:"name"`
	Column string `json:"column"`
	Where  string `json:"where,omitempty"`
}

type archiveJSON struct {
	Files  int    `json:"files"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

const idTimeLayout = "20060102T150405Z"

var (
	idPattern     = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)
	namePattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	identPattern  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// newID returns a fresh snapshot id for a snapshot created at t.
func newID(t time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // never fails: crypto/rand aborts the process instead
	return t.UTC().Format(idTimeLayout) + "-" + hex.EncodeToString(b)
}

// idTime is the creation time an id encodes.
func idTime(id string) (time.Time, error) {
	if !idPattern.MatchString(id) {
		return time.Time{}, errors.New("not a snapshot id")
	}
	t, err := time.Parse(idTimeLayout, id[:len(idTimeLayout)])
	if err != nil {
		return time.Time{}, errors.New("not a snapshot id: bad time")
	}
	return t, nil
}

// ValidSnapshotID reports whether id has the form of a snapshot id.
func ValidSnapshotID(id string) bool {
	_, err := idTime(id)
	return err == nil
}

func validTable(t string) bool {
	schema, table, found := strings.Cut(t, ".")
	if !found {
		return identPattern.MatchString(t)
	}
	return identPattern.MatchString(schema) && identPattern.MatchString(table)
}

// maxWhereLen bounds an AccountTable's condition.
const maxWhereLen = 1000

// check reports what is wrong with t, without quoting it. Column must be
// set (withDefaults fills it in).
func (t AccountTable) check() error {
	switch {
	case !validTable(t.Name):
		return errors.New("table name is not \"table\" or \"schema.table\" of plain identifiers")
	case !identPattern.MatchString(t.Column):
		return errors.New("account column is not a plain identifier")
	case len(t.Where) > maxWhereLen:
		return fmt.Errorf("condition longer than %d bytes", maxWhereLen)
	case !utf8.ValidString(t.Where) || strings.ContainsAny(t.Where, ";\x00") ||
		strings.Contains(t.Where, "--") || strings.Contains(t.Where, "/*"):
		return errors.New("condition must be one SQL expression, without ';' or comments")
	}
	return nil
}

func encodeManifest(s Snapshot) ([]byte, error) {
	m := manifestJSON{
		Format:      manifestFormat,
		ID:          s.ID,
		CreatedAt:   s.CreatedAt.UTC(),
		CompletedAt: s.CompletedAt.UTC(),
		Databases:   make([]dumpJSON, 0, len(s.Databases)),
		Accounts:    s.Accounts,
	}
	if m.Accounts == nil {
		m.Accounts = []string{}
	}
	for _, d := range s.Databases {
		dj := dumpJSON{Name: d.Name, Size: d.Size, SHA256: d.SHA256, Tables: make([]tableJSON, len(d.Tables))}
		for i, t := range d.Tables {
			dj.Tables[i] = tableJSON(t.withDefaults())
		}
		m.Databases = append(m.Databases, dj)
	}
	if s.Logs != nil {
		m.Logs = &archiveJSON{Files: s.Logs.Files, Size: s.Logs.Size, SHA256: s.Logs.SHA256}
	}
	if err := m.validate(""); err != nil {
		return nil, fmt.Errorf("encode catalog entry: %w", err)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode catalog entry: %w", err)
	}
	return append(data, '\n'), nil
}

// decodeManifest decodes a catalog entry read from disk, which is outside
// input: it is size-limited by the caller, decoded strictly and validated
// completely, so that nothing in it can reach a file path or SQL statement
// unchecked. wantID, when set, must be the id in the entry (the file name's).
// Errors never quote account ids or other values from the entry.
func decodeManifest(data []byte, wantID string) (Snapshot, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m manifestJSON
	if err := dec.Decode(&m); err != nil {
		return Snapshot{}, fmt.Errorf("decode catalog entry: %w", jsonErrorWithoutValues(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Snapshot{}, errors.New("decode catalog entry: data after the JSON object")
	}
	if err := m.validate(wantID); err != nil {
		return Snapshot{}, fmt.Errorf("decode catalog entry: %w", err)
	}
	s := Snapshot{
		ID:          m.ID,
		CreatedAt:   m.CreatedAt.UTC(),
		CompletedAt: m.CompletedAt.UTC(),
		Databases:   make([]DatabaseDump, 0, len(m.Databases)),
		Accounts:    m.Accounts,
	}
	for _, d := range m.Databases {
		dd := DatabaseDump{Name: d.Name, Size: d.Size, SHA256: d.SHA256, Tables: make([]AccountTable, len(d.Tables))}
		for i, t := range d.Tables {
			dd.Tables[i] = AccountTable(t)
		}
		s.Databases = append(s.Databases, dd)
	}
	if m.Logs != nil {
		s.Logs = &LogsArchive{Files: m.Logs.Files, Size: m.Logs.Size, SHA256: m.Logs.SHA256}
	}
	return s, nil
}

// jsonErrorWithoutValues keeps the kind and offset of a JSON error but not
// the value it may quote.
func jsonErrorWithoutValues(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Errorf("field %q has the wrong type", typ.Field)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("truncated")
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return errors.New("unknown field (written by a newer release?)")
	default:
		return errors.New("invalid JSON")
	}
}

func (m *manifestJSON) validate(wantID string) error {
	if m.Format != manifestFormat {
		return fmt.Errorf("format %d is not %d (written by another release?)", m.Format, manifestFormat)
	}
	created, err := idTime(m.ID)
	if err != nil {
		return errors.New("bad snapshot id")
	}
	if wantID != "" && m.ID != wantID {
		return errors.New("id does not match the file name")
	}
	if !m.CreatedAt.Equal(created) {
		return errors.New("created_at does not match the id")
	}
	// A snapshot takes minutes or hours; a year is a broken entry.
	if m.CompletedAt.Before(m.CreatedAt) || m.CompletedAt.Sub(m.CreatedAt) > 366*24*time.Hour {
		return errors.New("completed_at is before created_at or implausibly late")
	}
	if len(m.Databases) == 0 && m.Logs == nil {
		return errors.New("neither databases nor logs")
	}
	seen := map[string]bool{}
	for i, d := range m.Databases {
		switch {
		case !namePattern.MatchString(d.Name):
			return fmt.Errorf("database %d: bad name", i)
		case seen[d.Name]:
			return fmt.Errorf("database %d: name repeated", i)
		case d.Size < 0 || !sha256Pattern.MatchString(d.SHA256):
			return fmt.Errorf("database %d: bad size or checksum", i)
		case len(d.Tables) == 0:
			return fmt.Errorf("database %d: no tables", i)
		}
		seen[d.Name] = true
		for _, t := range d.Tables {
			if err := AccountTable(t).check(); err != nil {
				return fmt.Errorf("database %d: %w", i, err)
			}
		}
	}
	if l := m.Logs; l != nil && (l.Files < 0 || l.Size < 0 || !sha256Pattern.MatchString(l.SHA256)) {
		return errors.New("logs: bad count, size or checksum")
	}
	if m.Accounts == nil {
		return errors.New("no account list")
	}
	for i, a := range m.Accounts {
		if err := checkAccountID(a); err != nil {
			return fmt.Errorf("account %d: %w", i, err)
		}
		if i > 0 && m.Accounts[i-1] >= a {
			return fmt.Errorf("account %d: not sorted or repeated", i)
		}
	}
	return nil
}

// writeFileAtomic makes dir/name hold data, or leave it as it was: the data
// goes to a temporary file in the same directory, is fsynced, renamed over
// the name, and the directory is fsynced so that the rename survives a
// crash. A crash leaves at most a temporary file (".name.tmp-*"), which
// readers ignore and Rotate removes.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmpName, filepath.Join(dir, name)); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

// syncDir fsyncs a directory, making the creation, rename or removal of its
// entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// isTempName reports whether a catalog file name is a temporary file of
// writeFileAtomic.
func isTempName(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-")
}

// readManifest reads and decodes one catalog entry, reusing the decoded
// form while the file is unchanged (entries are never rewritten, so size
// and modification time are a sufficient check against outside edits).
func (s *Store) readManifest(id string) (Snapshot, error) {
	path := s.manifestPath(id)
	f, err := os.Open(path)
	if err != nil {
		return Snapshot{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Snapshot{}, err
	}
	s.mu.Lock()
	c, ok := s.cache[id]
	s.mu.Unlock()
	if ok && c.size == st.Size() && c.modTime.Equal(st.ModTime()) {
		return c.snap, nil
	}
	if st.Size() > maxManifestSize {
		return Snapshot{}, fmt.Errorf("%w %s: larger than %d bytes", ErrDamagedManifest, id, maxManifestSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return Snapshot{}, err
	}
	snap, err := decodeManifest(data, id)
	if err != nil {
		return Snapshot{}, fmt.Errorf("%w %s: %w", ErrDamagedManifest, id, err)
	}
	s.mu.Lock()
	s.cache[id] = cachedManifest{size: st.Size(), modTime: st.ModTime(), snap: snap}
	s.mu.Unlock()
	return snap, nil
}

func (s *Store) forget(id string) {
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
}

// Inventory lists what the backup root holds: the catalogued snapshots,
// oldest first, and the ids of incomplete snapshots and damaged catalog
// entries. It fails only when a directory cannot be listed; an entry that
// cannot be read is reported in Damaged, and a snapshot that is deleted
// while Inventory runs is left out.
func (s *Store) Inventory(ctx context.Context) (Inventory, error) {
	inv, _, err := s.inventory(ctx)
	return inv, err
}

func (s *Store) inventory(ctx context.Context) (Inventory, []error, error) {
	var inv Inventory
	var damage []error
	names, err := readDirNames(s.catalogDir())
	if err != nil {
		return inv, nil, fmt.Errorf("list backup catalog: %w", err)
	}
	catalogued := map[string]bool{}
	for _, name := range names {
		id, ok := strings.CutSuffix(name, manifestSuffix)
		if !ok || !ValidSnapshotID(id) {
			continue // temporary files of an interrupted write, strangers
		}
		if err := ctx.Err(); err != nil {
			return inv, nil, err
		}
		catalogued[id] = true
		snap, err := s.readManifest(id)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			delete(catalogued, id) // rotated meanwhile
		case err != nil:
			inv.Damaged = append(inv.Damaged, id)
			if !errors.Is(err, ErrDamagedManifest) {
				err = fmt.Errorf("%w %s: %w", ErrDamagedManifest, id, err)
			}
			damage = append(damage, err)
		default:
			inv.Snapshots = append(inv.Snapshots, snap)
		}
	}
	// Entries deleted by another process leave the cache here.
	s.mu.Lock()
	for id := range s.cache {
		if !catalogued[id] {
			delete(s.cache, id)
		}
	}
	s.mu.Unlock()
	data, err := readDirNames(s.snapshotsDir())
	if err != nil {
		return inv, nil, fmt.Errorf("list backup snapshots: %w", err)
	}
	for _, id := range data {
		// A snapshot completed after the catalog was listed shows up here
		// as incomplete: that errs on the safe side.
		if ValidSnapshotID(id) && !catalogued[id] {
			inv.Incomplete = append(inv.Incomplete, id)
		}
	}
	slices.SortFunc(inv.Snapshots, func(a, b Snapshot) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	slices.Sort(inv.Incomplete)
	slices.Sort(inv.Damaged)
	return inv, damage, nil
}

// List returns the catalogued snapshots, oldest first. When some catalog
// entries cannot be read it returns the readable snapshots together with an
// error wrapping ErrDamagedManifest that names the damaged ids; Inventory
// lists them without failing.
func (s *Store) List(ctx context.Context) ([]Snapshot, error) {
	inv, damage, err := s.inventory(ctx)
	if err != nil {
		return nil, err
	}
	if len(damage) > 0 {
		return inv.Snapshots, fmt.Errorf("%w (repair the file from a copy, or delete the snapshot's catalog entry and directory; "+
			"Rotate deletes it when it expires): %w", ErrDamagedManifest, errors.Join(damage...))
	}
	return inv.Snapshots, nil
}

// Get returns the catalogued snapshot id. The error wraps
// ErrSnapshotNotFound when there is none, ErrDamagedManifest when its
// catalog entry cannot be read.
func (s *Store) Get(_ context.Context, id string) (Snapshot, error) {
	if !ValidSnapshotID(id) {
		return Snapshot{}, fmt.Errorf("%w: not a snapshot id", ErrSnapshotNotFound)
	}
	snap, err := s.readManifest(id)
	if errors.Is(err, fs.ErrNotExist) {
		return Snapshot{}, fmt.Errorf("%w: %s", ErrSnapshotNotFound, id)
	}
	if err != nil {
		if !errors.Is(err, ErrDamagedManifest) {
			return Snapshot{}, fmt.Errorf("read catalog entry %s: %w", id, err)
		}
		return Snapshot{}, err
	}
	return snap, nil
}

func readDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}
