-- The restore ledger: every account whose erasure reached the backups.
-- Backups cannot be edited, so a restore re-applies these erasures to the
-- restored data before it is used (see backupstore.Store.Restore).
--
-- It holds the internal account id, the job that erased it and when: no
-- personal data. One row per (account, job), so that a redelivered task
-- adds nothing and an account deleted, restored and deleted again keeps
-- both records.
--
-- erased_at is the database's clock at the first insert; restores compare
-- it with snapshot times from another clock, with a margin.

create table restore_ledger (
    account_id text        not null,
    job_id     text        not null,
    erased_at  timestamptz not null default now(),
    primary key (account_id, job_id)
);

-- Restore reads the entries newer than a snapshot.
create index restore_ledger_erased_at_idx on restore_ledger (erased_at);

---- create above / drop below ----

drop table restore_ledger;
