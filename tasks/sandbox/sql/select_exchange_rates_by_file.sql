-- The demo's view of a feed table: rows per source file and version, and the file's latest USD rate.
select r._source_file, r._source_version, count(*) as row_count,
       (array_agg(r.rate_to_gbp::text order by r.rate_date desc)
            filter (where c.currency_code = 'USD'))[1] as latest_usd_rate
from fact_exchange_rate as r
left join dim_currency as c using (currency_id)
group by r._source_file, r._source_version
order by r._source_file;
