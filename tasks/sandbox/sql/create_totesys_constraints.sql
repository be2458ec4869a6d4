-- Foreign keys and unique indexes of the source model (docs/reference/data-model.md), added after the bulk load.
alter table counterparty add constraint counterparty_legal_address_id_fkey
    foreign key (legal_address_id) references address (address_id) on update cascade on delete restrict;
alter table staff add constraint staff_department_id_fkey
    foreign key (department_id) references department (department_id) on update cascade on delete restrict;
alter table sales_order add constraint sales_order_design_id_fkey
    foreign key (design_id) references design (design_id) on update cascade on delete restrict;
alter table sales_order add constraint sales_order_staff_id_fkey
    foreign key (staff_id) references staff (staff_id) on update cascade on delete restrict;
alter table sales_order add constraint sales_order_counterparty_id_fkey
    foreign key (counterparty_id) references counterparty (counterparty_id) on update cascade on delete restrict;
alter table sales_order add constraint sales_order_currency_id_fkey
    foreign key (currency_id) references currency (currency_id) on update cascade on delete restrict;
alter table sales_order add constraint sales_order_agreed_delivery_location_id_fkey
    foreign key (agreed_delivery_location_id) references address (address_id) on update cascade on delete restrict;
alter table purchase_order add constraint purchase_order_staff_id_fkey
    foreign key (staff_id) references staff (staff_id) on update cascade on delete restrict;
alter table purchase_order add constraint purchase_order_counterparty_id_fkey
    foreign key (counterparty_id) references counterparty (counterparty_id) on update cascade on delete restrict;
alter table purchase_order add constraint purchase_order_currency_id_fkey
    foreign key (currency_id) references currency (currency_id) on update cascade on delete restrict;
alter table purchase_order add constraint purchase_order_agreed_delivery_location_id_fkey
    foreign key (agreed_delivery_location_id) references address (address_id) on update cascade on delete restrict;
alter table transaction add constraint transaction_sales_order_id_fkey
    foreign key (sales_order_id) references sales_order (sales_order_id) on update cascade on delete set null;
alter table transaction add constraint transaction_purchase_order_id_fkey
    foreign key (purchase_order_id) references purchase_order (purchase_order_id) on update cascade on delete set null;
alter table payment add constraint payment_transaction_id_fkey
    foreign key (transaction_id) references transaction (transaction_id) on update cascade on delete restrict;
alter table payment add constraint payment_counterparty_id_fkey
    foreign key (counterparty_id) references counterparty (counterparty_id) on update cascade on delete restrict;
alter table payment add constraint payment_currency_id_fkey
    foreign key (currency_id) references currency (currency_id) on update cascade on delete restrict;
alter table payment add constraint payment_payment_type_id_fkey
    foreign key (payment_type_id) references payment_type (payment_type_id) on update cascade on delete restrict;
create unique index transaction_sales_order_id_key on transaction (sales_order_id);
create unique index transaction_purchase_order_id_key on transaction (purchase_order_id);
create unique index payment_transaction_id_key on payment (transaction_id);
