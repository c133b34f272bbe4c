package backupstore

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// pgTool runs pg_dump or pg_restore against one database. It keeps the
// password out of the process list (a URL's password goes to PGPASSWORD),
// never prompts, and turns a failure into an error that carries the tool's
// own error lines but none of the lines that can quote row data.
func (s *Store) pgTool(ctx context.Context, tool, database, dsn string, args ...string) error {
	bin := tool
	if s.pgBinDir != "" {
		bin = filepath.Join(s.pgBinDir, tool)
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return fmt.Errorf("find %s: %w (install the PostgreSQL client tools of the servers' major version, "+
			"or name their directory with WithPgBinDir)", tool, err)
	}
	conn, env := connArgs(dsn)
	cmd := exec.CommandContext(ctx, path, append(args, "--no-password", "--dbname="+conn)...)
	cmd.Env = append(os.Environ(), env...)
	// Client messages in English, whatever the host's locale: the error
	// filter below matches them.
	cmd.Env = append(cmd.Env, "LC_ALL=C", "LC_MESSAGES=C")
	if os.Getenv("PGCONNECT_TIMEOUT") == "" {
		cmd.Env = append(cmd.Env, "PGCONNECT_TIMEOUT=15")
	}
	stderr := &tailBuffer{max: 64 << 10}
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s of database %s: %w", tool, database, ctx.Err())
		}
		if msg := errorLines(tool, stderr.String()); msg != "" {
			return fmt.Errorf("%s of database %s: %w: %s", tool, database, err, msg)
		}
		return fmt.Errorf("%s of database %s: %w", tool, database, err)
	}
	return nil
}

// connArgs returns what to pass as --dbname, and the environment that
// carries the password when dsn is a URL with one. A key=value DSN is
// passed as it is; put its password into a passfile (PGPASSFILE) to keep it
// out of the process list.
func connArgs(dsn string) (string, []string) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn, nil
	}
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn, nil
	}
	pw, ok := u.User.Password()
	if !ok {
		return dsn, nil
	}
	u.User = url.User(u.User.Username())
	return u.String(), []string{"PGPASSWORD=" + pw}
}

// errorLines keeps the tool's "error:" and "fatal:" lines, shortened, and
// drops the rest: DETAIL, CONTEXT and "Command was" lines can quote rows
// (a COPY line, a duplicate key), which are personal data.
func errorLines(tool, out string) string {
	var keep []string
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, tool+": ")
		if !ok {
			continue
		}
		if !strings.HasPrefix(rest, "error:") && !strings.HasPrefix(rest, "fatal:") {
			continue
		}
		// "error: COPY failed for table "t": ERROR:  invalid input syntax
		// for type integer: "value"": whatever follows a second colon and
		// a quote may be a value, so a line is cut at its first quoted
		// string after the server's "ERROR:".
		if i := strings.Index(rest, "ERROR:"); i >= 0 {
			if j := strings.IndexAny(rest[i:], `"'(`); j >= 0 {
				rest = rest[:i+j] + "…"
			}
		}
		if len(rest) > 300 {
			rest = rest[:300] + "…"
		}
		keep = append(keep, rest)
		if len(keep) == 5 {
			break
		}
	}
	return strings.Join(keep, "; ")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf bytes.Buffer
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > b.max {
		p = p[len(p)-b.max:]
	}
	if over := b.buf.Len() + len(p) - b.max; over > 0 {
		b.buf.Next(over)
	}
	b.buf.Write(p)
	return n, nil
}

func (b *tailBuffer) String() string { return b.buf.String() }
