-- The demo's star query: sales revenue by month of sale and currency, counting each order's
-- latest version once (facts keep every version).
with latest_sales_order as (
    select distinct on (f.sales_order_id)
        f.sales_order_id,
        f.created_date,
        f.units_sold,
        f.unit_price,
        f.currency_id
    from fact_sales_order as f
    order by f.sales_order_id, f.last_updated_date desc, f.last_updated_time desc
)
select
    to_char(d.date_id, 'YYYY-MM') as sales_month,
    c.currency_code,
    count(*) as orders,
    sum(s.units_sold * s.unit_price)::numeric(14, 2) as revenue
from latest_sales_order as s
inner join dim_date as d on d.date_id = s.created_date
inner join dim_currency as c on c.currency_id = s.currency_id
group by 1, 2
order by 1 desc, 2
limit $1;
