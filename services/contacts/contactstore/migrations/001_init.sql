-- The contacts a customer of the e-mail platform keeps: the people they mail
-- to, their lists and free-form properties. Every table carries account_id so
-- that an account's rows can be found and erased without joins.
--
-- Child rows reference their parent through (account_id, id), not id alone:
-- the database itself then guarantees that a membership or property never
-- points into another account, so deleting by account_id is complete.
--
-- The foreign keys have no ON DELETE CASCADE on purpose: a cascade would turn
-- one bounded batch of contacts into an unbounded delete of their children.
-- Purge deletes children first (properties, memberships), then contacts, then
-- lists.
--
-- The (account_id, ...) indexes serve three things at once: per-account
-- batched deletion in key order, the foreign-key checks a parent delete
-- runs against each child table, and footprint counts.

create table contact_lists (
    id         bigserial primary key,
    account_id text not null,
    name       text,
    created_at timestamptz not null default now(),
    constraint contact_lists_account_id_id_key unique (account_id, id)
);

create table contacts (
    id         bigserial primary key,
    account_id text not null,
    email      text not null,
    name       text,
    created_at timestamptz not null default now(),
    constraint contacts_account_id_id_key unique (account_id, id)
);

create table contact_list_members (
    list_id    bigint not null,
    contact_id bigint not null,
    account_id text   not null,
    primary key (list_id, contact_id),
    constraint contact_list_members_list_fkey
        foreign key (account_id, list_id) references contact_lists (account_id, id),
    constraint contact_list_members_contact_fkey
        foreign key (account_id, contact_id) references contacts (account_id, id)
);

create index contact_list_members_account_id_contact_id_idx
    on contact_list_members (account_id, contact_id);

create table contact_properties (
    contact_id bigint not null,
    account_id text   not null,
    key        text   not null,
    value      text,
    primary key (contact_id, key),
    constraint contact_properties_contact_fkey
        foreign key (account_id, contact_id) references contacts (account_id, id)
);

create index contact_properties_account_id_contact_id_idx
    on contact_properties (account_id, contact_id);

---- create above / drop below ----

drop table contact_properties;
drop table contact_list_members;
drop table contacts;
drop table contact_lists;
