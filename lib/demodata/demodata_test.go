package demodata

import (
	"regexp"
	"testing"
)

func TestASCIILower(t *testing.T) {
	tests := []struct{ give, want string }{
		{"Jürgen", "juergen"}, {"O'Brien", "obrien"}, {"de Vries", "devries"}, {"Søren", "soeren"},
		{"Tomáš", "tomas"}, {"Lindenhof-GmbH", "lindenhof-gmbh"}, {"Straße", "strasse"}, {"Łukasz", "lukasz"},
	}
	for _, tt := range tests {
		if got := ASCIILower(tt.give); got != tt.want {
			t.Errorf("ASCIILower(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// Every name folds into a usable local part and every domain is reserved.
func TestListsMakeValidAddresses(t *testing.T) {
	local := regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	for _, list := range [][]string{FirstNames(), LastNames()} {
		for _, n := range list {
			if !local.MatchString(ASCIILower(n)) {
				t.Errorf("%q folds to %q", n, ASCIILower(n))
			}
		}
	}
	domain := regexp.MustCompile(`^[a-z0-9-]+\.example$`)
	for _, d := range MailDomains() {
		if !domain.MatchString(d) {
			t.Errorf("domain %q is not under .example", d)
		}
	}
}
