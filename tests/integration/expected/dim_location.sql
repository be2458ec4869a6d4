select
    a.address_id as location_id, a.address_line_1, a.address_line_2, a.district, a.city,
    a.postal_code, a.country, a.phone
from address as a
