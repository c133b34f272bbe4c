package billingstore

// WithoutProvider makes a store that never calls a payment provider and
// leaves the provider step of an erasure to another store: the one over the
// live database, whose worker has the client. It is for copies of the
// billing database — a backup restored into a new database — on which an
// erasure must be applied again.
//
// Its ActionPseudonymise runs the local transaction only (invoices past
// retention deleted, the others pseudonymised, the customer cleared to a
// tombstone) and succeeds. The customer's provider reference stays in the
// tombstone, and the footprint keeps counting it (KindProviderCustomer):
// this store cannot know whether the live worker has deleted the customer
// at the provider yet, and clearing the reference of a copy that later
// replaces the live database would lose the only key to what the provider
// may still hold. An erasure run later by a store with a client deletes it
// there (a customer already gone counts as done) and clears it.
//
// Seed invents provider customer ids, as without WithStripe. Open fails
// with ErrInvalidOption when WithStripe is given too.
func WithoutProvider() Option {
	return func(o *options) error {
		o.noProvider = true
		return nil
	}
}
