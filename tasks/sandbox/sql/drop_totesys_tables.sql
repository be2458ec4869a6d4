-- totes seed --replace: remove a previous development source.
drop table if exists payment, transaction, payment_type, purchase_order, sales_order, staff, design,
    department, currency, counterparty, address, _prisma_migrations cascade;
drop type if exists "PaymentTypeName";
drop type if exists "TransactionType";
