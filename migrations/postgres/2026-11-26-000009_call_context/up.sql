-- Serviceplatformen's context as the call carried it, beside TransactionUUID and UserSystemUUID: the
-- municipality of AuthorityContext, and the caller's own call id and accounting info (InvocationContext or
-- CallContext), for finding a call from the sender's side.
ALTER TABLE deliveries ADD COLUMN context_municipality_cvr TEXT;
ALTER TABLE deliveries ADD COLUMN callers_service_call_identifier TEXT;
ALTER TABLE deliveries ADD COLUMN accounting_info TEXT;
