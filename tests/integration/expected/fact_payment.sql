select
    p.payment_id,
    p.created_at::date as created_date,
    p.created_at::time as created_time,
    p.last_updated::date as last_updated_date,
    p.last_updated::time as last_updated_time,
    p.transaction_id,
    p.counterparty_id,
    p.payment_amount,
    p.currency_id,
    p.payment_type_id,
    p.paid,
    p.payment_date::date as payment_date
from payment as p
