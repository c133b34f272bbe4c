package billingstore

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

var (
	// ErrInvalidOption is wrapped by Open's error for an invalid Option.
	ErrInvalidOption = errors.New("invalid billing store option")
	// ErrInvalidAccountID is wrapped by the errors of Purge (inside a
	// permanent worker error) and Seed for an account id that cannot be one.
	ErrInvalidAccountID = errors.New("invalid account id")
	// ErrInvalidSeedOptions is wrapped by Seed's error for bad SeedOptions.
	ErrInvalidSeedOptions = errors.New("invalid seed options")
)

// maxAccountIDLen is far above any real id ("acc-000123"); it only keeps a
// garbage task from reaching the database.
const maxAccountIDLen = 200

// checkAccountID rejects ids that cannot name an account. Account ids are
// internal ("acc-000123"); one with an "@" is most likely an e-mail address
// passed by mistake, so it is refused, and the returned error never repeats
// the id, which would put that address into logs and reports.
func checkAccountID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidAccountID)
	case len(id) > maxAccountIDLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidAccountID, maxAccountIDLen)
	case strings.ContainsRune(id, '@'):
		return fmt.Errorf("%w: contains '@' (an e-mail address instead of an internal id?)", ErrInvalidAccountID)
	case strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("%w: contains white space or control characters", ErrInvalidAccountID)
	}
	return nil
}
