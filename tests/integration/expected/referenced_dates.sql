-- Every date a fact refers to, computed from the source.
select distinct x.d
from (
    select created_at::date as d from sales_order
    union all select last_updated::date from sales_order
    union all select agreed_delivery_date::date from sales_order
    union all select agreed_payment_date::date from sales_order
    union all select created_at::date from purchase_order
    union all select last_updated::date from purchase_order
    union all select agreed_delivery_date::date from purchase_order
    union all select agreed_payment_date::date from purchase_order
    union all select created_at::date from payment
    union all select last_updated::date from payment
    union all select payment_date::date from payment
) as x
