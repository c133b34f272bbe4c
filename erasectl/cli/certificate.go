package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/lethe-privacy/lethe/services/coordinator/apiv1"
	"github.com/lethe-privacy/lethe/services/coordinator/certificate"
)

// ExitBadCertificate: certificate verify found that the certificate does
// not verify against the public key (changed after signing, signed with
// another key, or not a signed certificate at all).
const ExitBadCertificate = 9

var certificateSpec = commandSpec{
	name:    "certificate",
	summary: "fetch a job's signed erasure certificate, or verify one offline",
	usage:   "certificate JOB_ID [--out FILE] | certificate verify FILE --public-key PEMFILE | certificate key [--out PEMFILE]",
	description: `
  JOB_ID   fetches the signed certificate of a job that ended
           (GET /v1/erasures/{id}/certificate): per category and stage what
           was done and when, counts, who asked and why, what is retained
           under which legal basis. It holds ids, codes and counts only, no
           personal data. --out FILE saves the signed certificate (JSON) for
           an auditor; -o json prints it. Exits 6 for an unknown job, 7 while
           the job is still running.
  verify   checks a saved certificate against the coordinator's public key,
           offline: no network is used. Prints the certificate's summary
           and exits 0 when the signature holds; exits 9 when it does not
           (the file was changed after signing, or signed with another key)
           or the file is not a signed certificate; 2 when a file cannot be
           read.
  key      fetches the public key auditors verify with
           (GET /v1/certificate-key) as PEM, to stdout or --out PEMFILE; its
           key id and SHA-256 fingerprint go to stderr, to compare with the
           fingerprint the operator published.`,
	examples: `  erasectl certificate 0b7e6f7c-3f1d-4c1a-9a43-6d0f3c2a9e51 --out cert.json
  erasectl certificate key --out lethe-certificates.pub.pem
  erasectl certificate verify cert.json --public-key lethe-certificates.pub.pem`,
	globals: flagAPIURL,
	new:     func() command { return &certificateCmd{} },
}

type certificateCmd struct {
	action    string // "fetch", "verify" or "key"
	target    string // the job id or the certificate file
	out       string
	publicKey string
}

func (c *certificateCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.out, "out", "", "fetch: write the signed certificate to `FILE`; key: write the PEM public key to it")
	fs.StringVar(&c.publicKey, "public-key", "", "verify: the coordinator's public key, a PEM `FILE`")
}

func (c *certificateCmd) args(pos []string) error {
	switch {
	case len(pos) == 0:
		return errors.New("want a JOB_ID, 'verify FILE' or 'key'")
	case pos[0] == "verify":
		if len(pos) != 2 {
			return errors.New("verify wants exactly one certificate FILE")
		}
		if c.publicKey == "" {
			return errors.New("verify needs --public-key PEMFILE (fetch it once with 'erasectl certificate key')")
		}
		if c.out != "" {
			return errors.New("--out does not apply to verify")
		}
		c.action, c.target = "verify", pos[1]
		return nil
	case pos[0] == "key":
		if len(pos) != 1 {
			return errors.New("key takes no argument")
		}
		c.action = "key"
	default:
		if len(pos) != 1 {
			return fmt.Errorf("want exactly one JOB_ID, got %d arguments", len(pos))
		}
		c.action, c.target = "fetch", pos[0]
		if err := validateID("job id", c.target); err != nil {
			return err
		}
	}
	if c.publicKey != "" {
		return errors.New("--public-key applies to verify only")
	}
	return nil
}

func (c *certificateCmd) run(ctx context.Context, p *program) error {
	switch c.action {
	case "verify":
		return c.verify(p)
	case "key":
		return c.key(ctx, p)
	default:
		return c.fetch(ctx, p)
	}
}

func (c *certificateCmd) fetch(ctx context.Context, p *program) error {
	client, err := p.api()
	if err != nil {
		return err
	}
	sc, err := client.GetCertificate(ctx, c.target)
	if err != nil {
		return p.apiError(err, c.target)
	}
	if c.out != "" {
		var buf bytes.Buffer
		if err := writeJSON(&buf, sc); err != nil {
			return err
		}
		if err := os.WriteFile(c.out, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("save the certificate: %w", err)
		}
		fmt.Fprintf(p.stderr, "signed certificate written to %s (key %s); verify it with: erasectl certificate verify %s --public-key PEMFILE\n", c.out, sc.KeyID, c.out)
	}
	if p.cfg.json() {
		return writeJSON(p.stdout, sc)
	}
	var cert certificate.Certificate
	if err := json.Unmarshal(sc.Certificate, &cert); err != nil {
		return fmt.Errorf("the coordinator sent a certificate this erasectl cannot read: %w", err)
	}
	if err := writeFields(p.stdout, [][2]string{{"signature", "not checked here (key " + sc.KeyID + "); save it with --out and run 'erasectl certificate verify'"}}); err != nil {
		return err
	}
	return writeCertificate(p, cert)
}

// verify checks a certificate file offline.
func (c *certificateCmd) verify(p *program) error {
	pub, err := certificate.LoadPublicKey(c.publicKey)
	if err != nil {
		return usageErrorf("--public-key: %v", err)
	}
	raw, err := os.ReadFile(c.target)
	if err != nil {
		return usageErrorf("read the certificate: %v", err)
	}
	var sc certificate.SignedCertificate
	if err := json.Unmarshal(raw, &sc); err != nil {
		return withCode(ExitBadCertificate, fmt.Errorf("%s is not a signed certificate (JSON as 'erasectl certificate JOB_ID --out' saves it): %w", c.target, err))
	}
	cert, err := certificate.Open(sc, pub)
	switch {
	case errors.Is(err, certificate.ErrBadSignature):
		return withCode(ExitBadCertificate, fmt.Errorf("INVALID: %s does not verify: %w; do not rely on it", c.target, err))
	case err != nil:
		return withCode(ExitBadCertificate, fmt.Errorf("%s cannot be verified: %w", c.target, err))
	}
	if p.cfg.json() {
		return writeJSON(p.stdout, struct {
			Valid       bool                    `json:"valid"`
			KeyID       string                  `json:"key_id"`
			Certificate certificate.Certificate `json:"certificate"`
		}{true, certificate.KeyID(pub), cert})
	}
	if err := writeFields(p.stdout, [][2]string{{"signature", "valid (ed25519, key " + certificate.KeyID(pub) + ")"}}); err != nil {
		return err
	}
	return writeCertificate(p, cert)
}

func (c *certificateCmd) key(ctx context.Context, p *program) error {
	client, err := p.api()
	if err != nil {
		return err
	}
	k, err := client.GetCertificateKey(ctx)
	if err != nil {
		return p.apiError(err, "")
	}
	if _, err := certificate.ParsePublicKeyPEM([]byte(k.PublicKey)); err != nil {
		return fmt.Errorf("the coordinator sent a public key this erasectl cannot read: %w", err)
	}
	fmt.Fprintf(p.stderr, "key %s, SHA-256 fingerprint %s: compare it with the fingerprint the operator published\n", k.KeyID, k.Fingerprint)
	if c.out != "" {
		if err := os.WriteFile(c.out, []byte(k.PublicKey), 0o644); err != nil {
			return fmt.Errorf("save the public key: %w", err)
		}
	}
	switch {
	case p.cfg.json():
		return writeJSON(p.stdout, k)
	case c.out == "":
		_, err := fmt.Fprint(p.stdout, k.PublicKey)
		return err
	}
	return nil
}

// writeCertificate prints a certificate for people.
func writeCertificate(p *program, c certificate.Certificate) error {
	deadline := c.Deadline + " (met)"
	if !c.FinishedBeforeDeadline {
		deadline = c.Deadline + " (MISSED)"
	}
	fields := [][2]string{
		{"issued", c.IssuedAt + " by " + c.Issuer},
		{"job", c.JobID},
		{"account", c.AccountID},
		{"status", c.Status},
		{"requested by", c.RequestedBy + " (" + c.Origin + ")"},
		{"reason", c.Reason},
		{"created", c.CreatedAt},
		{"finished", c.FinishedAt},
		{"deadline", deadline},
		{"items purged", strconv.FormatInt(c.ItemsPurged, 10)},
		{"policy version", orDash(c.PolicyVersion)},
	}
	extra := fields
	if c.PolicyFingerprint != "" {
		extra = append(extra, [2]string{"policy fingerprint", c.PolicyFingerprint})
	}
	if c.ErasedAt != "" {
		extra = append(extra, [2]string{"erased", c.ErasedAt})
	}
	if c.OriginalDeadline != "" {
		extra = append(extra, [2]string{"original deadline", c.OriginalDeadline + " (extended, see actions)"})
	}
	if err := writeFields(p.stdout, extra); err != nil {
		return err
	}
	fmt.Fprintln(p.stdout)
	t := newTable("CATEGORY", "STAGE", "ACTION", "STATUS", "GEN", "ATTEMPTS", "ITEMS", "DISPATCHED", "FINISHED", "ERROR CODE")
	var replays []string
	for _, k := range c.Tasks {
		t.add(k.Category, k.Stage, k.Action, k.Status, strconv.FormatUint(uint64(k.Generation), 10), strconv.FormatUint(uint64(k.Attempts), 10),
			strconv.FormatInt(k.ItemsPurged, 10), k.DispatchedAt, k.FinishedAt, k.ErrorCode)
		for _, r := range k.Replays {
			replays = append(replays, fmt.Sprintf("%s/%s generation %d at %s by %s: %s", k.Category, k.Stage, r.Generation, r.At, r.Actor, r.Reason))
		}
	}
	if err := t.write(p.stdout); err != nil {
		return err
	}
	if len(replays) > 0 {
		fmt.Fprintln(p.stdout, "\nreplays:")
		for _, r := range replays {
			fmt.Fprintln(p.stdout, "  "+cell(r))
		}
	}
	if len(c.Retained) > 0 {
		fmt.Fprintln(p.stdout, "\nretained:")
		for _, r := range c.Retained {
			until := r.Until
			if r.RetainedUntil != "" {
				until = r.RetainedUntil + " (" + r.Until + ")"
			}
			if r.DeletedAt != "" {
				until += "; deleted " + r.DeletedAt
			}
			fmt.Fprintln(p.stdout, "  "+cell(r.Category+": "+r.What))
			fmt.Fprintln(p.stdout, "    until: "+cell(until))
			fmt.Fprintln(p.stdout, "    legal basis: "+cell(r.LegalBasis))
		}
	}
	if len(c.Actions) > 0 {
		fmt.Fprintln(p.stdout, "\nactions:")
		for _, a := range c.Actions {
			line := fmt.Sprintf("%s at %s by %s: %s", a.Kind, a.At, a.Actor, a.Reason)
			if a.Months > 0 {
				line += fmt.Sprintf(" (+%d month(s))", a.Months)
			}
			if a.Ticket != "" {
				line += " [" + a.Ticket + "]"
			}
			fmt.Fprintln(p.stdout, "  "+cell(line))
		}
	}
	return nil
}

// The coordinator's and this package's views of a signed certificate
// must stay the same shape.
var _ = certificate.SignedCertificate(apiv1.SignedCertificate{})
