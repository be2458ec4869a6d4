-- Full rebuild from the lake: empty every star table and the batch record, in the rebuild's own
-- transaction, so readers see the old warehouse until the rebuilt one commits.
truncate table
    fact_sales_order, fact_purchase_order, fact_payment, dim_date, dim_staff, dim_location,
    dim_design, dim_currency, dim_counterparty, dim_payment_type, dim_transaction, _totes_loaded_batch
restart identity;
