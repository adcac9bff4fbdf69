-- SF1590_B: the fordringstyper a sender may hand over, and the master data each requires.
CREATE TABLE sortiment_fordringstyper (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    sender_id INTEGER NOT NULL REFERENCES sortiment_senders(id),
    code TEXT NOT NULL,
    required TEXT NOT NULL          -- JSON array: "periode", "foraeldelsesdato", "adresse", "kontering", "relateret"
);

-- The ERP's own register of parties it already knows as debtors, kept by the ERP. A hæfter found here is
-- referred to by the ERP's debtor number; one not found gets a row in erp_debtor_data as a new debtor.
CREATE TABLE erp_debtors (
    identifier_type TEXT NOT NULL CHECK (identifier_type IN ('CPR', 'CVR')),
    identifier TEXT NOT NULL,
    erp_debtor_number TEXT NOT NULL,
    PRIMARY KEY (identifier_type, identifier)
);

-- Import tables the ERP reads, written in the same transaction as the receipt.
CREATE TABLE erp_claims (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    kvittering_id TEXT NOT NULL UNIQUE REFERENCES receipts(kvittering_id),
    delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
    afsender_system TEXT NOT NULL,
    fordring_id TEXT NOT NULL,
    src_fordringstype TEXT NOT NULL,
    erp_claim_type TEXT NOT NULL,
    principal TEXT NOT NULL,        -- exact decimal, e.g. "4250.00"; never a float
    currency TEXT NOT NULL,
    description TEXT NOT NULL,
    period_from DATE,
    period_to DATE,
    established DATE NOT NULL,
    due DATE NOT NULL,
    last_timely_payment DATE NOT NULL,
    limitation DATE,
    related_fordring_id TEXT,
    related_claim_id INTEGER REFERENCES erp_claims(id),
    erp_account TEXT,
    erp_dimensions TEXT NOT NULL,   -- JSON object name -> value
    src_kontering TEXT,             -- JSON of the received kontering, for audit
    mapping_rules TEXT NOT NULL,    -- file:line of the rules that mapped type and account
    mapping_version TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    status TEXT NOT NULL DEFAULT 'NY',
    picked_up_at TIMESTAMP,
    UNIQUE (afsender_system, fordring_id)
);

-- Master data of the parties as received. Personal data: the CPR number is kept here, once per party and
-- version of its name and address, because the ERP needs it to create or find the debtor.
CREATE TABLE erp_debtor_data (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    identifier_type TEXT NOT NULL CHECK (identifier_type IN ('CPR', 'CVR')),
    identifier TEXT NOT NULL,
    erp_debtor_number TEXT,         -- set when the ERP already knew the party (from erp_debtors)
    name TEXT NOT NULL,
    street TEXT,
    house_number TEXT,
    floor TEXT,
    door TEXT,
    postcode TEXT,
    city TEXT,
    country TEXT,
    created_at TIMESTAMP NOT NULL,
    status TEXT NOT NULL DEFAULT 'NY',
    picked_up_at TIMESTAMP
);
CREATE INDEX erp_debtor_data_by_identifier ON erp_debtor_data (identifier_type, identifier);

CREATE TABLE erp_claim_parties (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    claim_id INTEGER NOT NULL REFERENCES erp_claims(id),
    position INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('JuridiskAnsvarlig', 'JuridiskMedhaefter')),
    debtor_data_id INTEGER NOT NULL REFERENCES erp_debtor_data(id),
    erp_debtor_number TEXT,         -- the ERP's number when it knew the party; else the ERP creates the debtor
    status TEXT NOT NULL DEFAULT 'NY',
    UNIQUE (claim_id, position)
);
