select
    po.purchase_order_id,
    po.created_at::date as created_date,
    po.created_at::time as created_time,
    po.last_updated::date as last_updated_date,
    po.last_updated::time as last_updated_time,
    po.staff_id,
    po.counterparty_id,
    po.item_code,
    po.item_quantity,
    po.item_unit_price,
    po.currency_id,
    po.agreed_delivery_date::date as agreed_delivery_date,
    po.agreed_payment_date::date as agreed_payment_date,
    po.agreed_delivery_location_id
from purchase_order as po
