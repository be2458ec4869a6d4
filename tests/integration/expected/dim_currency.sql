-- ISO 4217 names written out by hand: independent of the library the product uses.
select c.currency_id, c.currency_code, coalesce(iso.currency_name, 'Unknown') as currency_name
from currency as c
left join (values ('GBP', 'Pound Sterling'), ('USD', 'US Dollar'), ('EUR', 'Euro')) as iso (code, currency_name)
    on iso.code = c.currency_code
