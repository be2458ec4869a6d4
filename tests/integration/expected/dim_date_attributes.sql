-- dim_date's attributes recomputed by PostgreSQL from each date_id, for comparison with the row.
select
    d.date_id,
    extract(year from d.date_id)::int as year,
    extract(month from d.date_id)::int as month,
    extract(day from d.date_id)::int as day,
    extract(isodow from d.date_id)::int as day_of_week,
    trim(to_char(d.date_id, 'FMDay')) as day_name,
    trim(to_char(d.date_id, 'FMMonth')) as month_name,
    extract(quarter from d.date_id)::int as quarter
from dim_date as d
