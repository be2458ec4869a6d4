select pt.payment_type_id, pt.payment_type_name::text as payment_type_name
from payment_type as pt
