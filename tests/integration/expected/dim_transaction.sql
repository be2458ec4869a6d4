select t.transaction_id, t.transaction_type::text as transaction_type, t.sales_order_id, t.purchase_order_id
from transaction as t
