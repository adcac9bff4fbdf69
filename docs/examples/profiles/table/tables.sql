-- The import tables of the example table-target profile (erp-profil.toml beside this file): an invented
-- layout in the style of an ERP's general-ledger and debtor import, not any vendor's. The same SQL runs on
-- SQLite and PostgreSQL; the tests create these tables and book into them.
CREATE TABLE erp_import_bilag (
    batch_nr BIGINT NOT NULL,
    loebenr INTEGER NOT NULL,
    bilagsnr VARCHAR(40) NOT NULL,
    bilagsdato CHAR(10) NOT NULL,
    tekst VARCHAR(200),
    kilde VARCHAR(10) NOT NULL,
    erp_ref VARCHAR(30) NOT NULL,
    leverance VARCHAR(36),
    afsender VARCHAR(36) NOT NULL,
    status VARCHAR(10) NOT NULL DEFAULT 'NY'
);
CREATE TABLE erp_import_linje (
    batch_nr BIGINT NOT NULL,
    bilag_ref INTEGER NOT NULL,
    linje INTEGER NOT NULL,
    konto VARCHAR(20) NOT NULL,
    afdeling_nr VARCHAR(10),
    beloeb_oere BIGINT NOT NULL,
    beloeb_signeret VARCHAR(20) NOT NULL,
    beloeb_tekst VARCHAR(20) NOT NULL,
    dk CHAR(1) NOT NULL,
    valuta CHAR(3) NOT NULL,
    posteringsdato CHAR(8) NOT NULL,
    tekst VARCHAR(60) NOT NULL,
    cpr_cvr VARCHAR(10),
    sag VARCHAR(60),
    status VARCHAR(10) NOT NULL DEFAULT 'NY'
);
CREATE TABLE erp_import_fordring (
    batch_nr BIGINT NOT NULL,
    fordring_ref INTEGER NOT NULL,
    fordringsnr VARCHAR(40) NOT NULL,
    fordringstype VARCHAR(40) NOT NULL,
    hovedstol_oere BIGINT NOT NULL,
    hovedstol_tekst VARCHAR(20) NOT NULL,
    forfald DATE NOT NULL,
    sidste_rettidige DATE NOT NULL,
    periode VARCHAR(23),
    beskrivelse VARCHAR(200) NOT NULL,
    konto VARCHAR(20)
);
CREATE TABLE erp_import_debitor (
    fordring_ref INTEGER NOT NULL,
    nr INTEGER NOT NULL,
    rolle VARCHAR(20) NOT NULL,
    id_type CHAR(3) NOT NULL,
    id_nr VARCHAR(10) NOT NULL,
    navn VARCHAR(100) NOT NULL,
    adresse VARCHAR(120),
    postnr VARCHAR(10),
    by_navn VARCHAR(60),
    land CHAR(2)
);
