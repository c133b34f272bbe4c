package logstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
)

// readBufferSize is the buffer of segment reads; lines longer than it are
// assembled, up to maxLineLen.
const readBufferSize = 256 << 10

// maxLineLen bounds the lines the filter assembles in memory. A longer line
// is no record (the platform's are a few hundred bytes): it is copied
// through in pieces and counted as malformed, so that a runaway line can
// neither exhaust memory nor be lost.
const maxLineLen = 4 << 20

// ctxCheckLines is how often (in lines) a filter looks at its context.
const ctxCheckLines = 4096

// counter is a per-account count the filter increments without allocating.
type counter struct{ n int64 }

// lineFilter is one pass over the lines of a segment. What it does depends
// on which fields are set:
//
//   - drop: records of these accounts are left out of out and counted;
//   - count: records of these accounts are counted (and kept);
//   - collect: the accounts of the kept records are added (for a sidecar);
//   - out: kept lines are written there, each ending in a newline (a last
//     line without one, from a torn append, gets one, so that a later
//     append or merge cannot glue two lines together).
//
// Lines that are not a record of a valid account id (see accountOf) are
// malformed: always kept, counted, never dropped.
type lineFilter struct {
	drop    map[string]*counter
	count   map[string]*counter
	collect map[string]struct{}
	out     io.Writer

	// lines, kept, removed and malformed count what the pass saw.
	lines, kept, removed, malformed int64
	// bytesIn is the uncompressed input.
	bytesIn int64

	scratch []byte
	long    []byte
}

// errSource records the error of the underlying file, so that a failed
// read (transient) is told apart from undecodable data (corrupt).
type errSource struct {
	r   io.Reader
	err error
}

func (e *errSource) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// runGzip filters a gzip-compressed segment (every member of it). Errors
// wrap ErrCorruptSegment when the data cannot be decompressed, and the
// read error when the file could not be read.
func (f *lineFilter) runGzip(ctx context.Context, r io.Reader) error {
	src := &errSource{r: r}
	zr, err := gzip.NewReader(bufio.NewReaderSize(src, 64<<10))
	if err != nil {
		return classify(src, err)
	}
	defer zr.Close()
	if err := f.run(ctx, zr); err != nil {
		return classify(src, err)
	}
	return nil
}

// classify turns an error from reading through a decompressor into a read
// error or ErrCorruptSegment.
func classify(src *errSource, err error) error {
	switch {
	case src.err != nil:
		return fmt.Errorf("read segment: %w", src.err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, errWriteFailed):
		return err
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: empty file, no gzip header", ErrCorruptSegment)
	default:
		// The decompressor's message names no content, only what was
		// wrong with the framing or checksum.
		return fmt.Errorf("%w: %v", ErrCorruptSegment, err)
	}
}

// errWriteFailed wraps errors of f.out, so that they are not taken for
// corrupt input.
var errWriteFailed = errors.New("write filtered segment")

// run filters the uncompressed lines of r.
func (f *lineFilter) run(ctx context.Context, r io.Reader) error {
	br := bufio.NewReaderSize(r, readBufferSize)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			f.long = append(f.long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) && len(f.long) <= maxLineLen {
				line, err = br.ReadSlice('\n')
				f.long = append(f.long, line...)
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				if err := f.copyLongLine(br); err != nil {
					return err
				}
				continue
			}
			line = f.long
		}
		if len(line) > 0 {
			if err := f.handle(line); err != nil {
				return err
			}
			if f.lines%ctxCheckLines == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// copyLongLine passes a line longer than maxLineLen through to out: f.long
// holds its start, br the rest.
func (f *lineFilter) copyLongLine(br *bufio.Reader) error {
	f.lines++
	f.kept++
	f.malformed++
	if err := f.write(f.long); err != nil {
		return err
	}
	f.bytesIn += int64(len(f.long))
	for {
		chunk, err := br.ReadSlice('\n')
		f.bytesIn += int64(len(chunk))
		if werr := f.write(chunk); werr != nil {
			return werr
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			if len(chunk) == 0 || chunk[len(chunk)-1] != '\n' {
				return f.write([]byte{'\n'})
			}
			return nil
		default:
			return err
		}
	}
}

// handle decides one line (with its newline, if it has one).
func (f *lineFilter) handle(line []byte) error {
	f.lines++
	f.bytesIn += int64(len(line))
	content := line
	if content[len(content)-1] == '\n' {
		content = content[:len(content)-1]
	}
	id, ok := accountOf(content, &f.scratch)
	if !ok || !validAccountID(id) {
		f.malformed++
		f.kept++
		return f.writeLine(line)
	}
	if f.drop != nil {
		if c := f.drop[string(id)]; c != nil {
			c.n++
			f.removed++
			return nil
		}
	}
	if f.count != nil {
		if c := f.count[string(id)]; c != nil {
			c.n++
		}
	}
	if f.collect != nil {
		if _, seen := f.collect[string(id)]; !seen {
			f.collect[string(id)] = struct{}{}
		}
	}
	f.kept++
	return f.writeLine(line)
}

func (f *lineFilter) writeLine(line []byte) error {
	if f.out == nil {
		return nil
	}
	if err := f.write(line); err != nil {
		return err
	}
	if line[len(line)-1] != '\n' {
		return f.write([]byte{'\n'})
	}
	return nil
}

func (f *lineFilter) write(b []byte) error {
	if f.out == nil {
		return nil
	}
	if _, err := f.out.Write(b); err != nil {
		return fmt.Errorf("%w: %w", errWriteFailed, err)
	}
	return nil
}
