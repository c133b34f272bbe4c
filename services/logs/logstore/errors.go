package logstore

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

var (
	// ErrInvalidOption is wrapped by Open's error for an invalid Option.
	ErrInvalidOption = errors.New("invalid log store option")
	// ErrInvalidAccountID is wrapped by the errors of Purge (inside a
	// permanent worker error), Append and Seed for an account id that
	// cannot be one.
	ErrInvalidAccountID = errors.New("invalid account id")
	// ErrInvalidSeedOptions is wrapped by Seed's error for bad SeedOptions.
	ErrInvalidSeedOptions = errors.New("invalid seed options")
	// ErrSegmentSealed is wrapped by Append's error when the hour's segment
	// is already sealed: a sealed segment never takes new records.
	ErrSegmentSealed = errors.New("segment is sealed")
	// ErrCorruptSegment is wrapped by the errors of Purge (inside a
	// permanent worker error with the code "corrupt_segment"), Footprint,
	// Seal and RebuildIndex when a segment cannot be decompressed. Retrying
	// cannot help; an operator must restore the segment from a copy.
	ErrCorruptSegment = errors.New("corrupt segment")
	// ErrClosed is wrapped by the errors of Purge calls made after Close or
	// still waiting when Close runs. The other methods keep working on the
	// files after Close; only the erasure loop stops.
	ErrClosed = errors.New("log store closed")
	// ErrInvalidHour is wrapped by the errors of Append, Seal and Seed for
	// an hour outside the years 1970 to 9999, which the directory layout
	// cannot name.
	ErrInvalidHour = errors.New("hour outside the years 1970-9999")
)

// maxAccountIDLen is far above any real id ("acc-000123"); it only keeps a
// garbage task from reaching the segments.
const maxAccountIDLen = 200

// checkAccountID rejects ids that cannot name an account. Account ids are
// internal ("acc-000123"); one with an "@" is most likely an e-mail address
// passed by mistake, so it is refused, and the returned error never repeats
// the id, which would put that address into logs and reports. The index
// sidecars store one id per line, which is why white space and control
// characters are refused too.
func checkAccountID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidAccountID)
	case len(id) > maxAccountIDLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidAccountID, maxAccountIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: not UTF-8", ErrInvalidAccountID)
	case strings.ContainsRune(id, '@'):
		return fmt.Errorf("%w: contains '@' (an e-mail address instead of an internal id?)", ErrInvalidAccountID)
	case strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError }) >= 0:
		return fmt.Errorf("%w: contains white space or control characters", ErrInvalidAccountID)
	}
	return nil
}

// validAccountID is checkAccountID for a hot path: a record whose account
// id fails it is kept but never indexed, since no task can name it.
func validAccountID(id []byte) bool {
	if len(id) == 0 || len(id) > maxAccountIDLen {
		return false
	}
	for _, c := range id {
		// The common case: printable ASCII other than space and '@'.
		if c <= ' ' || c == '@' || c >= 0x7f {
			return checkAccountID(string(id)) == nil
		}
	}
	return true
}
