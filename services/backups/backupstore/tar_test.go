package backupstore

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLogTreeRoundTrip(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "logs")
	files := map[string]string{
		"segments/2026/03/01/02.jsonl.gz": "sealed",
		"segments/2026/03/01/03.jsonl":    "open, being written",
		"segments/2026/03/01/03.lock":     "",
		"README":                          "x",
	}
	for name, content := range files {
		writeFile(t, filepath.Join(src, name), content)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "logs.tar")
	got, err := writeTar(context.Background(), src, archive)
	if err != nil {
		t.Fatalf("writeTar: %v", err)
	}
	if got.Files != len(files) {
		t.Errorf("archived %d files, want %d (no symbolic links)", got.Files, len(files))
	}
	if n, sum, err := hashFile(archive); err != nil || n != got.Size || sum != got.SHA256 {
		t.Errorf("archive is %d bytes %s (%v), catalogued %d %s", n, sum, err, got.Size, got.SHA256)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	n, err := extractTar(context.Background(), archive, dst)
	if err != nil || n != len(files) {
		t.Fatalf("extractTar = %d, %v; want %d files", n, err, len(files))
	}
	for name, content := range files {
		data, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(data) != content {
			t.Errorf("restored %s = %q, %v; want %q", name, data, err, content)
		}
	}
	if _, err := os.Lstat(filepath.Join(dst, "link")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("symbolic link restored (lstat: %v)", err)
	}
}

// The archive is checked against its checksum first, but extraction still
// treats it as outside input.
func TestExtractTarRefusesEscapesAndLinks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		hdr  tar.Header
	}{
		{name: "parent directory", hdr: tar.Header{Typeflag: tar.TypeReg, Name: "../evil", Size: 0, Mode: 0o600}},
		{name: "absolute path", hdr: tar.Header{Typeflag: tar.TypeReg, Name: "/tmp/evil", Size: 0, Mode: 0o600}},
		{name: "symbolic link", hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "/etc/passwd"}},
		{name: "hard link", hdr: tar.Header{Typeflag: tar.TypeLink, Name: "link", Linkname: "../x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			archive := filepath.Join(t.TempDir(), "logs.tar")
			f, err := os.Create(archive)
			if err != nil {
				t.Fatal(err)
			}
			tw := tar.NewWriter(f)
			if err := tw.WriteHeader(&tt.hdr); err != nil {
				t.Fatal(err)
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			_ = f.Close()
			dir := t.TempDir()
			if _, err := extractTar(context.Background(), archive, filepath.Join(dir, "out")); !errors.Is(err, ErrDamagedSnapshot) {
				t.Errorf("extractTar = %v, want ErrDamagedSnapshot", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "evil")); err == nil {
				t.Error("extractTar wrote outside its directory")
			}
		})
	}
}
