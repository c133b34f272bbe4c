// Package demodata holds the word lists the stores' seeders build
// synthetic people from, so that contacts, event logs and billing invent
// the same kind of names and addresses. Every address is under the
// reserved .example domain: demo mail can never reach a real person.
//
// The lists are functions, not package variables, so that no caller can
// change them.
package demodata

import "strings"

// FirstNames are given names from the platform's markets.
func FirstNames() []string {
	return []string{"Anna", "Jonas", "Lena", "Lukas", "Marie", "Felix", "Sophie", "Paul", "Emma", "Leon",
		"Mia", "Noah", "Hannah", "Elias", "Lea", "Ben", "Jürgen", "Sabine", "Björn", "Ute",
		"Chloé", "Louis", "Camille", "Hugo", "Giulia", "Marco", "Lucía", "Pablo", "Sofia", "Mateo",
		"Emil", "Ingrid", "Søren", "Astrid", "Jan", "Zofia", "Piotr", "Eva", "Tomáš", "Aoife"}
}

// LastNames are family names from the platform's markets.
func LastNames() []string {
	return []string{"Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
		"Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Braun", "Zimmermann",
		"Dubois", "Martin", "Bernard", "Rossi", "Bianchi", "García", "Fernández", "Jansen", "de Vries",
		"Nielsen", "Larsson", "Kowalski", "Nowak", "Novák", "Murphy", "O'Brien", "Smith", "Berg", "Lindqvist",
		"Hansen", "Keller", "Huber", "Gruber", "Peeters"}
}

// MailDomains are invented mailbox providers and companies.
func MailDomains() []string {
	return []string{"nordpost.example", "webmail.example", "postfach.example", "mailhaus.example",
		"inbox.example", "alpenmail.example", "fjordnet.example", "brieftaube.example",
		"lindenhof-gmbh.example", "kontor24.example", "acme.example", "globex.example"}
}

// ASCIILower folds a name into what an address local part or a domain
// label uses: lower-case a-z, digits and '-', with umlauts and accents
// spelled out ("Jürgen" → "juergen", "O'Brien" → "obrien").
func ASCIILower(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch r {
		case 'ä':
			b.WriteString("ae")
		case 'ö', 'ø':
			b.WriteString("oe")
		case 'ü':
			b.WriteString("ue")
		case 'ß':
			b.WriteString("ss")
		case 'å':
			b.WriteString("aa")
		case 'á', 'à', 'â':
			b.WriteByte('a')
		case 'é', 'è', 'ê':
			b.WriteByte('e')
		case 'í', 'ì':
			b.WriteByte('i')
		case 'ó', 'ò', 'ô':
			b.WriteByte('o')
		case 'ú', 'ù':
			b.WriteByte('u')
		case 'ñ', 'ń':
			b.WriteByte('n')
		case 'ç':
			b.WriteByte('c')
		case 'ł':
			b.WriteByte('l')
		case 'š', 'ś':
			b.WriteByte('s')
		case 'ž', 'ż':
			b.WriteByte('z')
		default:
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}
