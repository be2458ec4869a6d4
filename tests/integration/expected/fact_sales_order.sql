select
    so.sales_order_id,
    so.created_at::date as created_date,
    so.created_at::time as created_time,
    so.last_updated::date as last_updated_date,
    so.last_updated::time as last_updated_time,
    so.staff_id as sales_staff_id,
    so.counterparty_id,
    so.units_sold,
    so.unit_price,
    so.currency_id,
    so.design_id,
    so.agreed_payment_date::date as agreed_payment_date,
    so.agreed_delivery_date::date as agreed_delivery_date,
    so.agreed_delivery_location_id
from sales_order as so
