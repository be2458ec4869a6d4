-- One round of business activity on a ToteSys source ($1::int = new sales orders). Run in one
-- transaction, so every row it writes shares one last_updated: the equal-timestamp case.
insert into design (design_name, file_location, file_name, created_at, last_updated)
select
    'Design ' || (select count(*) from design) + g,
    '/usr/share/designs',
    'design-' || md5(random()::text) || '.jpg',
    (now() at time zone 'UTC')::timestamp(3),
    (now() at time zone 'UTC')::timestamp(3)
from generate_series(1, greatest(1, $1::int / 10)) as g;

with picked as (
    select
        1 + floor(random() * (select max(design_id) from design))::int as design_id,
        1 + floor(random() * (select max(staff_id) from staff))::int as staff_id,
        1 + floor(random() * (select max(counterparty_id) from counterparty))::int as counterparty_id,
        1000 + floor(random() * 99000)::int as units_sold,
        round((2 + random() * 2)::numeric, 2) as unit_price,
        1 + floor(random() * (select max(currency_id) from currency))::int as currency_id,
        to_char(current_date + 2 + floor(random() * 12)::int, 'YYYY-MM-DD') as agreed_delivery_date,
        to_char(current_date + floor(random() * 14)::int, 'YYYY-MM-DD') as agreed_payment_date,
        1 + floor(random() * (select max(address_id) from address))::int as location_id
    from generate_series(1, $1::int)
),
new_order as (
    insert into sales_order (
        design_id, staff_id, counterparty_id, units_sold, unit_price, currency_id,
        agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id, created_at, last_updated
    )
    select
        design_id, staff_id, counterparty_id, units_sold, unit_price, currency_id,
        agreed_delivery_date, agreed_payment_date, location_id,
        (now() at time zone 'UTC')::timestamp(3), (now() at time zone 'UTC')::timestamp(3)
    from picked
    returning sales_order_id, counterparty_id, units_sold, unit_price, currency_id, agreed_payment_date
),
new_transaction as (
    insert into transaction (transaction_type, sales_order_id, created_at, last_updated)
    select 'SALE', sales_order_id, (now() at time zone 'UTC')::timestamp(3), (now() at time zone 'UTC')::timestamp(3)
    from new_order
    returning transaction_id, sales_order_id
)
insert into payment (
    transaction_id, counterparty_id, payment_amount, currency_id, payment_type_id, paid,
    payment_date, company_ac_number, counterparty_ac_number, created_at, last_updated
)
select
    t.transaction_id, o.counterparty_id, o.units_sold * o.unit_price, o.currency_id, 1, false,
    o.agreed_payment_date, 10000000 + floor(random() * 89999999)::int,
    10000000 + floor(random() * 89999999)::int,
    (now() at time zone 'UTC')::timestamp(3), (now() at time zone 'UTC')::timestamp(3)
from new_transaction as t
inner join new_order as o on o.sales_order_id = t.sales_order_id;

with picked as (
    select
        1 + floor(random() * (select max(staff_id) from staff))::int as staff_id,
        1 + floor(random() * (select max(counterparty_id) from counterparty))::int as counterparty_id,
        upper(substr(md5(random()::text), 1, 7)) as item_code,
        1 + floor(random() * 1000)::int as item_quantity,
        round((3 + random() * 997)::numeric, 2) as item_unit_price,
        1 + floor(random() * (select max(currency_id) from currency))::int as currency_id,
        to_char(current_date + 2 + floor(random() * 12)::int, 'YYYY-MM-DD') as agreed_delivery_date,
        to_char(current_date + floor(random() * 14)::int, 'YYYY-MM-DD') as agreed_payment_date,
        1 + floor(random() * (select max(address_id) from address))::int as location_id
    from generate_series(1, greatest(1, $1::int / 2))
),
new_order as (
    insert into purchase_order (
        staff_id, counterparty_id, item_code, item_quantity, item_unit_price, currency_id,
        agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id, created_at, last_updated
    )
    select
        staff_id, counterparty_id, item_code, item_quantity, item_unit_price, currency_id,
        agreed_delivery_date, agreed_payment_date, location_id,
        (now() at time zone 'UTC')::timestamp(3), (now() at time zone 'UTC')::timestamp(3)
    from picked
    returning purchase_order_id, counterparty_id, item_quantity, item_unit_price, currency_id, agreed_payment_date
),
new_transaction as (
    insert into transaction (transaction_type, purchase_order_id, created_at, last_updated)
    select 'PURCHASE', purchase_order_id, (now() at time zone 'UTC')::timestamp(3), (now() at time zone 'UTC')::timestamp(3)
    from new_order
    returning transaction_id, purchase_order_id
)
insert into payment (
    transaction_id, counterparty_id, payment_amount, currency_id, payment_type_id, paid,
    payment_date, company_ac_number, counterparty_ac_number, created_at, last_updated
)
select
    t.transaction_id, o.counterparty_id, o.item_quantity * o.item_unit_price, o.currency_id, 3, false,
    o.agreed_payment_date, 10000000 + floor(random() * 89999999)::int,
    10000000 + floor(random() * 89999999)::int,
    (now() at time zone 'UTC')::timestamp(3), (now() at time zone 'UTC')::timestamp(3)
from new_transaction as t
inner join new_order as o on o.purchase_order_id = t.purchase_order_id;

update payment
set paid = true, last_updated = (now() at time zone 'UTC')::timestamp(3)
where payment_id in (
    select unpaid.payment_id
    from payment as unpaid
    where not unpaid.paid
    order by unpaid.payment_id
    limit $1::int
);

update sales_order
set
    units_sold = units_sold + 1 + floor(random() * 100)::int,
    agreed_delivery_date = to_char(agreed_delivery_date::date + 7, 'YYYY-MM-DD'),
    last_updated = (now() at time zone 'UTC')::timestamp(3)
where sales_order_id in (
    select amended.sales_order_id
    from sales_order as amended
    order by random()
    limit greatest(1, $1::int / 5)
);

update address
set
    phone = '0' || (1000000000 + floor(random() * 8999999999)::bigint)::text,
    address_line_1 = (10 + floor(random() * 990)::int)::text || ' ' || split_part(address_line_1, ' ', 2) || ' Street',
    last_updated = (now() at time zone 'UTC')::timestamp(3)
where address_id = (
    select legal.legal_address_id
    from counterparty as legal
    order by random()
    limit 1
) and $1::int > 0;

update department
set
    manager = (array['Jeremie Franey', 'Shelley Levi', 'Naomi Lapaglia', 'Irving O''Keefe', 'Rose Harvey'])[1 + floor(random() * 5)::int],
    last_updated = (now() at time zone 'UTC')::timestamp(3)
where department_id = (
    select d.department_id
    from department as d
    order by random()
    limit 1
) and $1::int > 0;

-- A cancellation: the oldest unpaid sales order's payment, transaction and order are hard-deleted
-- (one statement, so the foreign keys are checked once all three are gone).
with cancelled as (
    select p.payment_id, t.transaction_id, t.sales_order_id
    from payment as p
    inner join transaction as t on t.transaction_id = p.transaction_id
    where not p.paid and t.sales_order_id is not null and $1::int > 0
    order by p.payment_id
    limit 1
),
deleted_payment as (
    delete from payment where payment_id in (select payment_id from cancelled) returning 1
),
deleted_transaction as (
    delete from transaction where transaction_id in (select transaction_id from cancelled) returning 1
)
delete from sales_order where sales_order_id in (select sales_order_id from cancelled);
