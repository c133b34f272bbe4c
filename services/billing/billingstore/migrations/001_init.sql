-- Billing data of the e-mail platform's customers: who pays (customers) and
-- what they were charged (invoices).
--
-- customers holds one row per account. Erasure clears its personal columns
-- and keeps the row as a tombstone (account_id, erased_at): the invoices
-- that must be retained still refer to it, and it carries the payment
-- provider's customer id until the provider confirmed the deletion there.
--
-- invoices keep a copy of the customer's name and address as printed on the
-- invoice: an invoice is a record of what was sent, not a view of the
-- current customer. Invoices are accounting vouchers that the law makes us
-- keep (AO §147, HGB §257): erasure replaces their personal columns with a
-- random pseudonym, records retain_until, and a later stage deletes them.
--
-- The check constraints make a half-erased row impossible: an erased
-- customer or a pseudonymised invoice cannot hold personal data.

create table customers (
    account_id           text primary key,
    -- Personal data: cleared at erasure.
    name                 text,
    company              text,
    email                text,
    address_line1        text,
    address_line2        text,
    postal_code          text,
    city                 text,
    country              text,
    vat_id               text,
    -- The payment provider ("stripe") and its customer id (cus_...). The id
    -- survives the erasure of the personal columns until the provider has
    -- deleted the customer, then it is cleared too.
    payment_provider     text,
    provider_customer_id text,
    created_at           timestamptz not null default now(),
    erased_at            timestamptz,
    provider_deleted_at  timestamptz,
    constraint customers_erased_no_personal_data check (
        erased_at is null
        or num_nonnulls(name, company, email, address_line1, address_line2,
                        postal_code, city, country, vat_id) = 0),
    constraint customers_provider_named check (
        provider_customer_id is null or payment_provider is not null)
);

create table invoices (
    id                 bigserial primary key,
    number             text   not null unique,
    account_id         text   not null references customers (account_id),
    issued_on          date   not null,
    due_on             date   not null,
    -- ISO 4217 code; amounts in its minor unit (cents).
    currency           text   not null,
    net_amount         bigint not null,
    tax_amount         bigint not null,
    gross_amount       bigint not null,
    -- The customer as printed on the invoice: personal data, replaced by
    -- customer_pseudonym at erasure.
    customer_name      text,
    customer_company   text,
    address_line1      text,
    address_line2      text,
    postal_code        text,
    city               text,
    vat_id             text,
    -- The country stays: alone it identifies nobody, and it decides the
    -- invoice's VAT treatment, which an audit checks.
    country            text,
    customer_pseudonym text,
    pseudonymised_at   timestamptz,
    -- The last day the invoice must be kept; it may be deleted from the
    -- next day on.
    retain_until       date,
    created_at         timestamptz not null default now(),
    constraint invoices_currency_code check (currency ~ '^[A-Z]{3}$'),
    constraint invoices_amounts_add_up check (gross_amount = net_amount + tax_amount),
    constraint invoices_due_after_issue check (due_on >= issued_on),
    constraint invoices_pseudonymised_consistently check (
        (pseudonymised_at is null) = (customer_pseudonym is null)),
    constraint invoices_pseudonymised_no_personal_data check (
        pseudonymised_at is null
        or (num_nonnulls(customer_name, customer_company, address_line1, address_line2,
                         postal_code, city, vat_id) = 0
            and retain_until is not null))
);

-- Serves per-account pseudonymisation, deletion by retention date, the
-- footprint counts and the foreign-key check of a customer's row.
create index invoices_account_id_issued_on_idx on invoices (account_id, issued_on);

-- Invoice numbers of the demo data: RE-<year>-<number>, unique across
-- accounts and repeated seeds.
create sequence invoice_number_seq;

---- create above / drop below ----

drop sequence invoice_number_seq;
drop table invoices;
drop table customers;
