-- Optional (totes seed --delta-indexes): indexes that make every delta read an index range scan.
create index if not exists address_last_updated_idx on address (last_updated);
create index if not exists counterparty_last_updated_idx on counterparty (last_updated);
create index if not exists currency_last_updated_idx on currency (last_updated);
create index if not exists department_last_updated_idx on department (last_updated);
create index if not exists design_last_updated_idx on design (last_updated);
create index if not exists staff_last_updated_idx on staff (last_updated);
create index if not exists sales_order_last_updated_idx on sales_order (last_updated);
create index if not exists purchase_order_last_updated_idx on purchase_order (last_updated);
create index if not exists payment_type_last_updated_idx on payment_type (last_updated);
create index if not exists transaction_last_updated_idx on transaction (last_updated);
create index if not exists payment_last_updated_idx on payment (last_updated);
