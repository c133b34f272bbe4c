package keyfile

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestCreateRacing: of many goroutines creating one file at once, one
// creates it, and whoever reads it at any moment reads it whole.
func TestCreateRacing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "k")
	const n = 16
	created := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := Create(path, []byte(fmt.Sprintf("key %02d\n", i)))
			if err != nil {
				t.Error(err)
			}
			created[i] = c
			got, err := os.ReadFile(path)
			if err != nil || len(got) != len("key 00\n") {
				t.Errorf("goroutine %d read %q (%v) after Create, want a whole key", i, got, err)
			}
		})
	}
	wg.Wait()
	winners := 0
	for _, c := range created {
		if c {
			winners++
		}
	}
	if winners != 1 {
		t.Errorf("%d goroutines created the file, want 1", winners)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*.tmp"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
