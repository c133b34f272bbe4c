// Command lethe-nats-auth writes what NATS needs to enforce Lethe's broker
// permissions (package brokerauth):
//
//	lethe-nats-auth conf [-categories c1,c2]
//	    prints auth.conf, the authorization block (deploy/nats/auth.conf is
//	    this output for the four categories)
//	lethe-nats-auth keys -dir DIR [-categories c1,c2] [-owner UID:GID]
//	    makes DIR hold one nkey seed per identity (<identity>.nk, kept when
//	    present), nkeys.conf with their public keys, and auth.conf; the
//	    server includes DIR/auth.conf, each process reads its own seed
//	    (LETHE_NATS_NKEY_SEED_FILE). -owner hands the seeds to the user the
//	    services run as (container set-ups, run as root).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lethe-privacy/lethe/lib/brokerauth"
	"github.com/lethe-privacy/lethe/lib/topology"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "lethe-nats-auth:", err)
		os.Exit(1)
	}
}

const usage = "usage: lethe-nats-auth conf [-categories c1,c2] | keys -dir DIR [-categories c1,c2] [-owner UID:GID]"

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	fs := flag.NewFlagSet("lethe-nats-auth "+args[0], flag.ContinueOnError)
	cats := fs.String("categories", strings.Join(topology.DefaultSettings().Categories, ","), "comma-separated categories, one worker identity each")
	dir := fs.String("dir", "", "directory of the seeds, nkeys.conf and auth.conf (keys)")
	owner := fs.String("owner", "", "UID:GID to own the seeds (keys; needs root)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var categories []string
	for _, c := range strings.Split(*cats, ",") {
		if c = strings.TrimSpace(c); c != "" {
			if !topology.ValidCategory(c) {
				return fmt.Errorf("-categories: %q is not a category (lower-case letters only)", c)
			}
			categories = append(categories, c)
		}
	}
	switch args[0] {
	case "conf":
		_, err := io.WriteString(stdout, brokerauth.Conf(categories))
		return err
	case "keys":
		if *dir == "" {
			return errors.New("keys needs -dir DIR")
		}
		ids := brokerauth.Identities(categories)
		if _, err := brokerauth.Keys(*dir, ids); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*dir, brokerauth.ConfFile), []byte(brokerauth.Conf(categories)), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", brokerauth.ConfFile, err)
		}
		if *owner != "" {
			uid, gid, err := parseOwner(*owner)
			if err != nil {
				return err
			}
			for _, id := range ids {
				if err := os.Chown(filepath.Join(*dir, brokerauth.SeedFile(id)), uid, gid); err != nil {
					return fmt.Errorf("hand the seed of %s to %s (run as root): %w", id, *owner, err)
				}
			}
			// The owner must reach its seed; listing the directory it need not.
			if err := os.Chmod(*dir, 0o711); err != nil {
				return fmt.Errorf("let %s reach %s: %w", *owner, *dir, err)
			}
		}
		fmt.Fprintf(stdout, "%d identities in %s: include %s from the server's configuration; give each process its <identity>.nk\n",
			len(ids), *dir, filepath.Join(*dir, brokerauth.ConfFile))
		return nil
	default:
		return fmt.Errorf("unknown command %q; %s", args[0], usage)
	}
}

func parseOwner(s string) (int, int, error) {
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("-owner %q: want numeric UID:GID such as 65532:65532", s)
	}
	return uid, gid, nil
}
