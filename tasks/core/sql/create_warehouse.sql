-- RevisedDW, the star schema of docs/reference/data-model.md, plus totes' own bookkeeping. Idempotent: the
-- pipeline runs it at the start of every load, under an advisory lock. Names are unqualified: they
-- resolve in the schema the caller chose (public; pg_temp for a rebuild's shadow copy).
-- Lineage columns start with "_": _batch_id names the lake batch that last wrote the row.
create table if not exists fact_sales_order (
    sales_record_id serial primary key,
    sales_order_id integer not null,
    created_date date not null,
    created_time time not null,
    last_updated_date date not null,
    last_updated_time time not null,
    sales_staff_id integer not null,
    counterparty_id integer not null,
    units_sold integer not null,
    unit_price numeric(10, 2) not null,
    currency_id integer not null,
    design_id integer not null,
    agreed_payment_date date not null,
    agreed_delivery_date date not null,
    agreed_delivery_location_id integer not null,
    _batch_id text not null
);
create unique index if not exists fact_sales_order_version_key
    on fact_sales_order (sales_order_id, last_updated_date, last_updated_time);

create table if not exists fact_purchase_order (
    purchase_record_id serial primary key,
    purchase_order_id integer not null,
    created_date date not null,
    created_time time not null,
    last_updated_date date not null,
    last_updated_time time not null,
    staff_id integer not null,
    counterparty_id integer not null,
    item_code varchar not null,
    item_quantity integer not null,
    item_unit_price numeric(10, 2) not null,
    currency_id integer not null,
    agreed_delivery_date date not null,
    agreed_payment_date date not null,
    agreed_delivery_location_id integer not null,
    _batch_id text not null
);
create unique index if not exists fact_purchase_order_version_key
    on fact_purchase_order (purchase_order_id, last_updated_date, last_updated_time);

create table if not exists fact_payment (
    payment_record_id serial primary key,
    payment_id integer not null,
    created_date date not null,
    created_time time not null,
    last_updated_date date not null,
    last_updated_time time not null,
    transaction_id integer not null,
    counterparty_id integer not null,
    payment_amount numeric(10, 2) not null,
    currency_id integer not null,
    payment_type_id integer not null,
    paid boolean not null,
    payment_date date not null,
    _batch_id text not null
);
create unique index if not exists fact_payment_version_key
    on fact_payment (payment_id, last_updated_date, last_updated_time);

create table if not exists dim_date (
    date_id date primary key,
    year integer not null,
    month integer not null,
    day integer not null,
    day_of_week integer not null,
    day_name varchar not null,
    month_name varchar not null,
    quarter integer not null,
    _batch_id text not null
);

create table if not exists dim_staff (
    staff_id integer primary key,
    first_name varchar not null,
    last_name varchar not null,
    department_name varchar not null,
    location varchar,
    email_address varchar not null,
    _batch_id text not null
);

create table if not exists dim_location (
    location_id integer primary key,
    address_line_1 varchar not null,
    address_line_2 varchar,
    district varchar,
    city varchar not null,
    postal_code varchar not null,
    country varchar not null,
    phone varchar not null,
    _batch_id text not null
);

create table if not exists dim_design (
    design_id integer primary key,
    design_name varchar not null,
    file_location varchar not null,
    file_name varchar not null,
    _batch_id text not null
);

create table if not exists dim_currency (
    currency_id integer primary key,
    currency_code varchar not null,
    currency_name varchar not null,
    _batch_id text not null
);

create table if not exists dim_counterparty (
    counterparty_id integer primary key,
    counterparty_legal_name varchar not null,
    counterparty_legal_address_line_1 varchar not null,
    counterparty_legal_address_line_2 varchar,
    counterparty_legal_district varchar,
    counterparty_legal_city varchar not null,
    counterparty_legal_postal_code varchar not null,
    counterparty_legal_country varchar not null,
    counterparty_legal_phone_number varchar not null,
    _batch_id text not null
);

create table if not exists dim_payment_type (
    payment_type_id integer primary key,
    payment_type_name varchar not null,
    _batch_id text not null
);

create table if not exists dim_transaction (
    transaction_id integer primary key,
    transaction_type varchar not null,
    sales_order_id integer,
    purchase_order_id integer,
    _batch_id text not null
);

-- One row per lake batch merged into the star tables; written in the merge's own transaction, so a
-- batch is either fully loaded and recorded, or neither.
create table if not exists _totes_loaded_batch (
    batch_id text primary key,
    loaded_at timestamptz not null default now(),
    row_counts jsonb not null
);

-- The lake this warehouse is loaded from (tasks/core/lake_binding.py): run, backfill and rebuild
-- refuse another lake, an empty one or a missing one. One row; the URL is kept without credentials.
create table if not exists _totes_lake (
    singleton boolean primary key default true check (singleton),
    lake_id text not null,
    lake_url text not null,
    bound_at timestamptz not null default now()
);

-- Feed tables (tasks/feeds/feeds.toml): one row per line of a staged source file. The lineage columns say
-- which file (SFTP path), which version of it (the raw zone's version id) and which line; the feed
-- loader deletes a file's rows when the file is removed or superseded, so the table always holds
-- exactly the rows of the currently staged files.
create table if not exists fact_exchange_rate (
    exchange_rate_record_id bigserial primary key,
    rate_date date not null,
    currency_id integer not null,
    rate_to_gbp numeric(18, 8) not null,
    _source_file text not null,
    _source_version text not null,
    _source_line integer not null,
    _loaded_at timestamptz not null default now()
);
create unique index if not exists fact_exchange_rate_natural_key
    on fact_exchange_rate (rate_date, currency_id);
create index if not exists fact_exchange_rate_source_file on fact_exchange_rate (_source_file);

-- The loaded set of each feed: which version of which file the feed's table holds.
create table if not exists _totes_feed_file (
    feed text not null,
    file text not null,
    version text not null,
    row_count bigint not null,
    loaded_at timestamptz not null default now(),
    primary key (feed, file)
);

-- Lineage added by totes 0.3 (after the tables above; "add column if not exists" migrates older
-- warehouses). _deleted_at: when totes found the row's key gone from the source (facts: on the
-- latest version of the key only; nothing is removed). _inferred: a placeholder member for an id
-- that facts refer to before (or without) its dimension row; replaced when the row arrives. dim_date
-- has both for uniformity: it is generated, never deleted or inferred.
-- Applied once: ALTER TABLE and CREATE VIEW take exclusive locks, which must not queue behind
-- analysts' queries on every run. The last column added is the sentinel.
do $$
begin
if not exists (
    select from information_schema.columns
    where table_schema = current_schema() and table_name = 'dim_transaction' and column_name = '_inferred'
) then
    alter table fact_sales_order add column if not exists _deleted_at timestamptz;
    alter table fact_purchase_order add column if not exists _deleted_at timestamptz;
    alter table fact_payment add column if not exists _deleted_at timestamptz;
    alter table dim_date add column if not exists _deleted_at timestamptz;
    alter table dim_date add column if not exists _inferred boolean not null default false;
    alter table dim_staff add column if not exists _deleted_at timestamptz;
    alter table dim_staff add column if not exists _inferred boolean not null default false;
    alter table dim_location add column if not exists _deleted_at timestamptz;
    alter table dim_location add column if not exists _inferred boolean not null default false;
    alter table dim_design add column if not exists _deleted_at timestamptz;
    alter table dim_design add column if not exists _inferred boolean not null default false;
    alter table dim_currency add column if not exists _deleted_at timestamptz;
    alter table dim_currency add column if not exists _inferred boolean not null default false;
    alter table dim_counterparty add column if not exists _deleted_at timestamptz;
    alter table dim_counterparty add column if not exists _inferred boolean not null default false;
    alter table dim_payment_type add column if not exists _deleted_at timestamptz;
    alter table dim_payment_type add column if not exists _inferred boolean not null default false;
    alter table dim_transaction add column if not exists _deleted_at timestamptz;
    alter table dim_transaction add column if not exists _inferred boolean not null default false;

    -- The current, undeleted state of the dimensions: each row that is not deleted (inferred members
    -- included: facts join to them). The facts' current views follow below.
    create or replace view current_dim_staff as select * from dim_staff where _deleted_at is null;
    create or replace view current_dim_location as select * from dim_location where _deleted_at is null;
    create or replace view current_dim_design as select * from dim_design where _deleted_at is null;
    create or replace view current_dim_currency as select * from dim_currency where _deleted_at is null;
    create or replace view current_dim_counterparty as select * from dim_counterparty where _deleted_at is null;
    create or replace view current_dim_payment_type as select * from dim_payment_type where _deleted_at is null;
    create or replace view current_dim_transaction as select * from dim_transaction where _deleted_at is null;
end if;
end
$$;

-- The current version of a fact is the one observed last (batch order, then last_updated), not the
-- largest stamp: a writer whose transaction began earlier and committed later stamps a newer row
-- with an older time. Applied once (the views' text is the sentinel), for the reason above.
do $$
declare
    fact text[];
begin
if not exists (
    select from pg_views
    where schemaname = current_schema() and viewname = 'current_fact_payment' and definition like '%_batch_id DESC%'
) then
    foreach fact slice 1 in array array[
        ['sales_order', 'sales_record_id'], ['purchase_order', 'purchase_record_id'], ['payment', 'payment_record_id']
    ] loop
        execute format(
            'create or replace view %I as select * from ('
            ' select distinct on (%I) * from %I'
            ' order by %I, _batch_id desc, last_updated_date desc, last_updated_time desc, %I desc'
            ') as latest where _deleted_at is null',
            'current_fact_' || fact[1], fact[1] || '_id', 'fact_' || fact[1], fact[1] || '_id', fact[2]
        );
    end loop;
end if;
end
$$;
