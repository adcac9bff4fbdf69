ALTER TABLE deliveries DROP COLUMN accounting_info;
ALTER TABLE deliveries DROP COLUMN callers_service_call_identifier;
ALTER TABLE deliveries DROP COLUMN context_municipality_cvr;
