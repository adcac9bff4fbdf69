-- Sortiment: every load is a version; the newest is in force. Older versions stay, so a receipt can be
-- explained by the sortiment that was in force when it was given.
CREATE TABLE sortiment_versions (
    id SERIAL PRIMARY KEY,
    loaded_at TIMESTAMP NOT NULL,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    content TEXT NOT NULL
);

CREATE TABLE sortiment_senders (
    id SERIAL PRIMARY KEY,
    version_id INTEGER NOT NULL REFERENCES sortiment_versions(id),
    system_uuid TEXT NOT NULL,
    name TEXT NOT NULL,
    authority_cvr TEXT NOT NULL,
    owners TEXT NOT NULL,          -- JSON array of email addresses
    valid_from DATE NOT NULL,
    valid_to DATE,
    integrations TEXT NOT NULL,    -- JSON array: "SF1590_A", "SF1590_B"
    certificates TEXT NOT NULL,    -- JSON array of fingerprints or subjects
    UNIQUE (version_id, system_uuid)
);

CREATE TABLE sortiment_konteringer (
    id SERIAL PRIMARY KEY,
    sender_id INTEGER NOT NULL REFERENCES sortiment_senders(id),
    funktion TEXT NOT NULL,        -- JSON arrays of glob patterns
    dranst TEXT NOT NULL,
    art TEXT NOT NULL
);

-- One row per received delivery (a SOAP call or a file), with the exact answer it got.
CREATE TABLE deliveries (
    id SERIAL PRIMARY KEY,
    leverance_id TEXT UNIQUE,      -- NULL when the delivery could not be read at all
    integration TEXT NOT NULL,
    transport TEXT NOT NULL,
    afsender_system TEXT,
    myndighed TEXT,
    transaction_uuid TEXT,
    user_system_uuid TEXT,
    request_hash TEXT NOT NULL,
    received_at TIMESTAMP NOT NULL,
    sortiment_version_id INTEGER REFERENCES sortiment_versions(id),
    mapping_version TEXT,
    accepted_count INTEGER NOT NULL,
    rejected_count INTEGER NOT NULL,
    response_json TEXT NOT NULL
);

CREATE TABLE receipts (
    kvittering_id TEXT PRIMARY KEY NOT NULL,
    delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
    integration TEXT NOT NULL,
    afsender_system TEXT,
    reference TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('Accepteret', 'Afvist')),
    content_hash TEXT NOT NULL,
    processed_at TIMESTAMP NOT NULL,
    erp_reference TEXT,
    receipt_json TEXT NOT NULL
);
-- The last guard against booking twice: one accepted receipt per (integration, sender, BilagId/FordringId).
CREATE UNIQUE INDEX receipts_accepted_once ON receipts (integration, afsender_system, reference)
    WHERE status = 'Accepteret';
CREATE INDEX receipts_by_delivery ON receipts (delivery_id);

CREATE TABLE receipt_errors (
    id SERIAL PRIMARY KEY,
    kvittering_id TEXT NOT NULL REFERENCES receipts(kvittering_id),
    position INTEGER NOT NULL,
    code TEXT NOT NULL,
    text TEXT NOT NULL,
    path TEXT,
    line INTEGER,
    col INTEGER,
    value TEXT
);
CREATE INDEX receipt_errors_by_code ON receipt_errors (code);

-- Import tables the ERP reads. The ERP sets status to 'HENTET' (and picked_up_at) when it has taken a row.
CREATE TABLE erp_journal (
    id SERIAL PRIMARY KEY,
    kvittering_id TEXT NOT NULL UNIQUE REFERENCES receipts(kvittering_id),
    delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
    afsender_system TEXT NOT NULL,
    bilag_id TEXT NOT NULL,
    bilagsdato DATE NOT NULL,
    bilagstekst TEXT,
    mapping_version TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    status TEXT NOT NULL DEFAULT 'NY',
    picked_up_at TIMESTAMP,
    UNIQUE (afsender_system, bilag_id)
);

CREATE TABLE erp_journal_lines (
    id SERIAL PRIMARY KEY,
    journal_id INTEGER NOT NULL REFERENCES erp_journal(id),
    line_no INTEGER NOT NULL,
    posting_id BIGINT NOT NULL,
    erp_account TEXT NOT NULL,
    erp_dimensions TEXT NOT NULL,  -- JSON object name -> value
    amount NUMERIC(15, 2) NOT NULL,
    debit_credit TEXT NOT NULL CHECK (debit_credit IN ('D', 'K')),
    currency TEXT NOT NULL,
    posting_date DATE NOT NULL,
    posting_text TEXT NOT NULL,
    party_type TEXT,               -- 'CPR' or 'CVR'
    party_id TEXT,                 -- personal data: kept here because the ERP pays out to this party
    case_reference TEXT,
    src_funktion TEXT NOT NULL,
    src_gruppering TEXT,
    src_dranst TEXT NOT NULL,
    src_ejerforhold TEXT,
    src_art TEXT NOT NULL,
    src_omkostningssted TEXT,
    src_pspelement TEXT,
    src_dimensions TEXT NOT NULL,  -- JSON array of [name, value]
    mapping_rule TEXT NOT NULL,    -- file:line of the rule that mapped this line
    status TEXT NOT NULL DEFAULT 'NY',
    UNIQUE (journal_id, posting_id)
);
